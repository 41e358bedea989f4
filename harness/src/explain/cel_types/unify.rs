//! Type variables as cel-go's checker treats them: binding an overload's parameters to
//! arguments (`dyn`/`any` as wildcards, the more general type winning), the checker's own
//! open variables, and joining a literal's element types.

use super::*;

/// Type parameter bindings while one overload is tried.
pub(super) type Subst = HashMap<u16, Ty>;

/// Can a value of type `arg` be passed where `param` is declared? Binds parameters.
pub(super) fn assign(param: &Ty, arg: &Ty, s: &mut Subst) -> bool {
    // An open variable of the checker's where a type is wanted: it becomes that type.
    if let Param(f) = arg
        && *f >= FREE_BASE
    {
        if let Some(bound) = s.get(f).cloned() {
            return assign(param, &bound, s);
        }
        match param {
            Param(n) if *n < FREE_BASE => {
                if let Some(b) = s.get(n).cloned() {
                    if !matches!(b, Param(x) if x == *f) {
                        s.insert(*f, b);
                    }
                } else {
                    s.insert(*n, arg.clone());
                }
            }
            Param(n) if n == f => {}
            p if !mentions_open(p, s) => {
                let want = substitute(p, s);
                s.insert(*f, want);
            }
            _ => {}
        }
        return true;
    }
    if let Param(n) = param {
        return match s.get(n).cloned() {
            Some(bound) => {
                if arg.wild() && !bound.wild() {
                    // `true ? 'a' : claims.x` is `any`: the more general type wins.
                    s.insert(*n, arg.clone());
                    true
                } else if assign(&bound, arg, s) {
                    true
                } else if assign(arg, &bound, s) {
                    // Widen, as cel-go's checker joins a parameter's bindings.
                    s.insert(*n, arg.clone());
                    true
                } else {
                    false
                }
            }
            None => {
                if !matches!(arg, Param(_)) {
                    s.insert(*n, arg.clone());
                }
                true
            }
        };
    }
    if arg.wild() || param.wild() || matches!(arg, Param(_)) {
        return true;
    }
    match (param, arg) {
        (List(p), List(a)) | (Opt(p), Opt(a)) | (Type(p), Type(a)) => assign(p, a, s),
        (Map(pk, pv), Map(ak, av)) => assign(pk, ak, s) && assign(pv, av, s),
        (p, a) => std::mem::discriminant(p) == std::mem::discriminant(a),
    }
}

/// Does `t` hold an overload parameter not bound yet?
pub(super) fn mentions_open(t: &Ty, s: &Subst) -> bool {
    match t {
        Param(n) if *n < FREE_BASE => s.get(n).is_none_or(|b| mentions_open(b, s)),
        List(e) | Opt(e) | Type(e) => mentions_open(e, s),
        Map(k, v) => mentions_open(k, s) || mentions_open(v, s),
        _ => false,
    }
}

/// `t` with every bound variable replaced; open ones stay.
pub(super) fn substitute(t: &Ty, s: &Subst) -> Ty {
    substitute_depth(t, s, 0)
}

pub(super) fn substitute_depth(t: &Ty, s: &Subst, depth: usize) -> Ty {
    if depth > 64 {
        return Dyn;
    }
    let sub = |x: &Ty| substitute_depth(x, s, depth + 1);
    match t {
        Param(n) => match s.get(n) {
            Some(b) if *b != Param(*n) => sub(b),
            _ => Param(*n),
        },
        List(e) => list(sub(e)),
        Opt(e) => opt(sub(e)),
        Type(e) => Type(Box::new(sub(e))),
        Map(k, v) => map(sub(k), sub(v)),
        t => t.clone(),
    }
}

/// Open variables as cel-go finally reports them: `dyn`.
pub(super) fn closed(t: &Ty) -> Ty {
    match t {
        Param(_) => Dyn,
        List(e) => list(closed(e)),
        Opt(e) => opt(closed(e)),
        Type(e) => Type(Box::new(closed(e))),
        Map(k, v) => map(closed(k), closed(v)),
        t => t.clone(),
    }
}

/// The type of a literal aggregate's elements, as cel-go's checker joins them: equal types
/// stay, `dyn`/`any` win, others become `dyn`. (The API server's environment then requires
/// literals to be homogeneous: [`homogeneous`] runs after a clean check.)
pub(super) fn join(a: Option<Ty>, b: Ty) -> Ty {
    let Some(a) = a else { return b };
    if a == b || matches!(b, Param(_)) {
        return a;
    }
    if b.wild() || matches!(a, Param(_)) {
        return b;
    }
    if a.wild() {
        return a;
    }
    let mut s = Subst::new();
    if assign(&a, &b, &mut s) { a } else { Dyn }
}

/// A type with an unresolved part (an empty literal's element): equal to anything.
pub(super) fn has_free(t: &Ty) -> bool {
    match t {
        Param(_) => true,
        List(e) | Opt(e) | Type(e) => has_free(e),
        Map(k, v) => has_free(k) || has_free(v),
        _ => false,
    }
}
