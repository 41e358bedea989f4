//! CEL type-checking as kube-apiserver's authentication compiler does it, over the `cel`
//! crate's parsed (macro-expanded) AST. The `cel` crate evaluates but has no checker; the
//! API server refuses to start on a type error, so explain must find the same ones.
//!
//! The API server's environment (`k8s.io/apiserver/pkg/authentication/cel/compile.go`):
//! `claims` is `map(string, any)` and `user` is `kubernetes.UserInfo`; claim and user
//! validation rules must have the static type `bool`, mappings may have any type. `any`
//! (`google.protobuf.Any`) behaves like `dyn` in calls and field selection, but unlike `dyn`
//! it cannot be the range of a comprehension: `claims.groups.map(…)` is refused,
//! `dyn(claims.groups).map(…)` is accepted. The rules of cel-go's checker are followed where
//! they decide acceptance: overload resolution with type parameters, `dyn`/`any`/error as
//! wildcards, literal aggregates joining to `dyn`, the comprehension range kinds, and the
//! same error wording (`undeclared reference to 'x' (in container '')`, `found no matching
//! overload for '_+_' applied to '(string, int)'`).

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use std::collections::HashMap;
use std::fmt;

mod literals;
mod overloads;
mod unify;

pub use literals::folding_error;
use literals::go_duration_ok;
use overloads::{Sig, overloads, type_ident};
use unify::{Subst, assign, closed, has_free, join, substitute};

#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Dyn,
    /// `google.protobuf.Any`: what a claim read from `claims` has.
    Any,
    Error,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Timestamp,
    Duration,
    Type(Box<Ty>),
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Opt(Box<Ty>),
    UserInfo,
    /// A type of one of Kubernetes' libraries (`kubernetes.URL`, `net.IP`, …).
    Opaque(&'static str),
    /// A type parameter of an overload (`A`, `B`).
    Param(u16),
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Dyn | Ty::Param(_) => f.write_str("dyn"),
            Ty::Any => f.write_str("any"),
            Ty::Error => f.write_str("*error*"),
            Ty::Null => f.write_str("null_type"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Timestamp => f.write_str("google.protobuf.Timestamp"),
            Ty::Duration => f.write_str("google.protobuf.Duration"),
            Ty::Type(t) => write!(f, "type({t})"),
            Ty::List(t) => write!(f, "list({t})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
            Ty::Opt(t) => write!(f, "optional_type({t})"),
            Ty::UserInfo => f.write_str("kubernetes.UserInfo"),
            Ty::Opaque(n) => f.write_str(n),
        }
    }
}

use Ty::*;

fn list(t: Ty) -> Ty {
    List(Box::new(t))
}
fn map(k: Ty, v: Ty) -> Ty {
    Map(Box::new(k), Box::new(v))
}
fn opt(t: Ty) -> Ty {
    Opt(Box::new(t))
}
const URL: Ty = Opaque("kubernetes.URL");
const IP: Ty = Opaque("net.IP");
const CIDR: Ty = Opaque("net.CIDR");
const QUANTITY: Ty = Opaque("kubernetes.Quantity");
const SEMVER: Ty = Opaque("kubernetes.Semver");
/// Type variables numbered from here are the checker's own (an empty literal's element, an
/// overload's parameter left open): they bind later, to what they meet (cel-go's inference).
const FREE_BASE: u16 = 1000;
const A: Ty = Param(0);
const B: Ty = Param(1);

impl Ty {
    /// A wildcard in assignment: cel-go's `isDyn` (dyn, any) or an earlier error.
    fn wild(&self) -> bool {
        matches!(self, Dyn | Any | Error)
    }
}

/// What the API server's CEL environment has. Authentication compiles in the "stored
/// expressions" environment, which holds every library the binary knows whatever its
/// compatibility version, so this is by the binary's minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `ext.Lists(v3)`: kube-apiserver 1.34 and later.
    pub lists_ext: bool,
    /// `library.SemverLib`: 1.33 and later.
    pub semver: bool,
    /// `ext.TwoVarComprehensions`: 1.32 and later.
    pub two_var: bool,
}

impl Features {
    /// The environment of kube-apiserver `1.<minor>`.
    pub fn for_minor(minor: u32) -> Self {
        Features {
            lists_ext: minor >= 34,
            semver: minor >= 33,
            two_var: minor >= 32,
        }
    }
}

/// A type error, located by the expression it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeError {
    pub id: u64,
    pub message: std::string::String,
}

struct Checker {
    features: Features,
    /// Bindings of the checker's open variables.
    free: Subst,
    next_free: u16,
    /// Each expression's type, for the validators that run after the check.
    types: HashMap<u64, Ty>,
    /// Literal lists and maps seen, with their elements' (or keys' and values') types, for
    /// the homogeneity check; literals inside `format()` arguments are exempt.
    literals: Vec<Vec<(u64, Ty)>>,
    format_depth: usize,
    /// Comprehension variables in scope, innermost last.
    scope: Vec<(std::string::String, Ty)>,
    root: (&'static str, Ty),
    errors: Vec<TypeError>,
}

/// Type-check `expr` with the variable `var` of type `var_ty` declared; the static type, or
/// the errors cel-go would report (the first one is what matters for a verdict).
pub fn check(
    expr: &IdedExpr,
    var: &'static str,
    var_ty: Ty,
    features: Features,
) -> Result<Ty, Vec<TypeError>> {
    let mut c = Checker {
        features,
        free: Subst::new(),
        next_free: FREE_BASE,
        types: HashMap::new(),
        literals: Vec::new(),
        format_depth: 0,
        scope: Vec::new(),
        root: (var, var_ty),
        errors: Vec::new(),
    };
    let t = c.expr(expr);
    if c.errors.is_empty() {
        c.homogeneous();
        c.literal_arguments(expr);
    }
    if c.errors.is_empty() {
        Ok(closed(&substitute(&t, &c.free)))
    } else {
        Err(c.errors)
    }
}

/// `claims`: `map(string, any)`.
pub fn claims_type() -> Ty {
    map(String, Any)
}

impl Checker {
    /// cel-go's literal validators, which the API server's environment turns on: duration,
    /// timestamp and regular-expression literals must parse, and `format()`'s string clause
    /// takes no `any`. They run after a clean type check.
    fn literal_arguments(&mut self, e: &IdedExpr) {
        let lit = |x: &IdedExpr| match &x.expr {
            Expr::Literal(LiteralValue::String(s)) => Some(s.to_string()),
            _ => None,
        };
        match &e.expr {
            Expr::Call(c) => {
                let name = c.func_name.as_str();
                match (name, c.target.as_deref(), c.args.as_slice()) {
                    ("duration", None, [a]) => {
                        if let Some(v) = lit(a)
                            && !go_duration_ok(&v)
                        {
                            self.err(a.id, "invalid duration argument".into());
                        }
                    }
                    ("timestamp", None, [a]) if matches!(&a.expr, Expr::Literal(LiteralValue::Int(i)) if !(-62_135_596_800..=253_402_300_799).contains(i.inner())) =>
                    {
                        self.err(a.id, "invalid timestamp argument".into());
                    }
                    ("timestamp", None, [a]) => {
                        if let Some(v) = lit(a)
                            && time::OffsetDateTime::parse(
                                &v,
                                &time::format_description::well_known::Rfc3339,
                            )
                            .is_err()
                        {
                            self.err(a.id, "invalid timestamp argument".into());
                        }
                    }
                    ("matches", Some(_), [a]) | ("matches", None, [_, a]) => {
                        if let Some(v) = lit(a)
                            && regex::Regex::new(&v).is_err()
                        {
                            self.err(a.id, "invalid matches argument".into());
                        }
                    }
                    ("format", Some(t), [list_arg]) => {
                        if let (Some(f), Expr::List(l)) = (lit(t), &list_arg.expr) {
                            self.format_clauses(&f, l);
                        }
                    }
                    _ => {}
                }
                if let Some(t) = &c.target {
                    self.literal_arguments(t);
                }
                for a in &c.args {
                    self.literal_arguments(a);
                }
            }
            Expr::Select(x) => self.literal_arguments(&x.operand),
            Expr::List(l) => l.elements.iter().for_each(|x| self.literal_arguments(x)),
            Expr::Map(m) => {
                for en in &m.entries {
                    if let EntryExpr::MapEntry(me) = &en.expr {
                        self.literal_arguments(&me.key);
                        self.literal_arguments(&me.value);
                    }
                }
            }
            Expr::Comprehension(c) => {
                for x in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    self.literal_arguments(x);
                }
            }
            _ => {}
        }
    }

    /// `'…%s…'.format([x])`: the string clause refuses an `any` argument at compile time.
    fn format_clauses(&mut self, f: &str, l: &cel::common::ast::ListExpr) {
        let mut chars = f.chars().peekable();
        let mut n = 0;
        while let Some(ch) = chars.next() {
            if ch != '%' {
                continue;
            }
            // Flags and precision (`%.3f`) before the verb.
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            match chars.next() {
                Some('%') | None => {}
                Some(verb) => {
                    if verb == 's'
                        && let Some(x) = l.elements.get(n)
                        && self.types.get(&x.id).is_some_and(|t| *t == Any)
                    {
                        self.err(
                            x.id,
                            "error during formatting: string clause can only be used on strings, bools, bytes, ints, doubles, maps, lists, types, durations, and timestamps, was given google.protobuf.Any".into(),
                        );
                    }
                    n += 1;
                }
            }
        }
    }

    fn literal(&mut self, elements: Vec<(u64, Ty)>) {
        if self.format_depth == 0 && elements.len() > 1 {
            self.literals.push(elements);
        }
    }

    /// `HomogeneousAggregateLiterals`: every element of a literal has the first one's type
    /// exactly (`[claims.x, 'a']` is `expected type 'any' but found 'string'`).
    fn homogeneous(&mut self) {
        let literals = std::mem::take(&mut self.literals);
        for elements in literals {
            let Some((_, first)) = elements.first().cloned() else {
                continue;
            };
            for (id, t) in &elements[1..] {
                if *t != first && !has_free(t) && !has_free(&first) {
                    self.err(*id, format!("expected type '{first}' but found '{t}'"));
                    break;
                }
            }
        }
    }

    fn err(&mut self, id: u64, message: std::string::String) -> Ty {
        self.errors.push(TypeError { id, message });
        Error
    }

    fn lookup(&self, name: &str) -> Option<Ty> {
        if let Some((_, t)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return Some(t.clone());
        }
        if name == self.root.0 {
            return Some(self.root.1.clone());
        }
        type_ident(name)
    }

    fn fresh(&mut self) -> Ty {
        self.next_free = self.next_free.saturating_add(1);
        Param(self.next_free)
    }

    fn expr(&mut self, e: &IdedExpr) -> Ty {
        let t = self.expr_inner(e);
        let t = substitute(&t, &self.free);
        self.types.insert(e.id, t.clone());
        t
    }

    fn expr_inner(&mut self, e: &IdedExpr) -> Ty {
        match &e.expr {
            Expr::Unspecified => self.err(e.id, "unspecified expression".into()),
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Bool,
                LiteralValue::Bytes(_) => Bytes,
                LiteralValue::Double(_) => Double,
                LiteralValue::Int(_) => Int,
                LiteralValue::Null => Null,
                LiteralValue::String(_) => String,
                LiteralValue::UInt(_) => Uint,
            },
            Expr::Ident(name) => match self.lookup(name) {
                Some(t) => t,
                None => self.err(
                    e.id,
                    format!("undeclared reference to '{name}' (in container '')"),
                ),
            },
            Expr::Select(s) => {
                // A qualified name (`google.protobuf.Timestamp`) before a field selection.
                if let Some(q) = qualified(e)
                    && self
                        .lookup(q.split('.').next().unwrap_or_default())
                        .is_none()
                    && let Some(t) = type_ident(&q)
                {
                    return t;
                }
                let operand = self.expr(&s.operand);
                let field = self.select(e.id, &operand, &s.field);
                if s.test { Bool } else { field }
            }
            Expr::Call(call) => self.call(e, call),
            Expr::List(l) => {
                let mut elem = None;
                let mut seen = Vec::new();
                for (i, x) in l.elements.iter().enumerate() {
                    let mut t = self.expr(x);
                    if l.optional_indices.contains(&i) {
                        t = match t {
                            Opt(inner) => *inner,
                            Dyn | Any | Error => Dyn,
                            other => {
                                return self.err(
                                    x.id,
                                    format!(
                                        "expected type 'optional_type(dyn)' but found '{other}'"
                                    ),
                                );
                            }
                        };
                    }
                    seen.push((x.id, t.clone()));
                    elem = Some(join(elem, t));
                }
                self.literal(seen);
                match elem {
                    Some(t) => list(t),
                    None => {
                        let f = self.fresh();
                        list(f)
                    }
                }
            }
            Expr::Map(m) => {
                let (mut k, mut v) = (None, None);
                let (mut keys, mut values) = (Vec::new(), Vec::new());
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        let kt = self.expr(&me.key);
                        keys.push((me.key.id, kt.clone()));
                        k = Some(join(k, kt));
                        let mut vt = self.expr(&me.value);
                        if me.optional
                            && let Opt(inner) = vt
                        {
                            vt = *inner;
                        }
                        values.push((me.value.id, vt.clone()));
                        v = Some(join(v, vt));
                    }
                }
                self.literal(keys);
                self.literal(values);
                let k = match k {
                    Some(t) => t,
                    None => self.fresh(),
                };
                let v = match v {
                    Some(t) => t,
                    None => self.fresh(),
                };
                map(k, v)
            }
            Expr::Struct(s) => self.err(
                e.id,
                format!(
                    "undeclared reference to '{}' (in container '')",
                    s.type_name
                ),
            ),
            Expr::Comprehension(c) => {
                let range = self.expr(&c.iter_range);
                let (var1, var2) = match &range {
                    List(t) => match c.iter_var2 {
                        Some(_) => (Int, (**t).clone()),
                        None => ((**t).clone(), Dyn),
                    },
                    Map(k, v) => ((**k).clone(), (**v).clone()),
                    Dyn | Error | Param(_) => (Dyn, Dyn),
                    other => {
                        let other = other.clone();
                        return self.err(
                            c.iter_range.id,
                            format!(
                                "expression of type '{other}' cannot be range of a comprehension (must be list, map, or dynamic)"
                            ),
                        );
                    }
                };
                let accu = self.expr(&c.accu_init);
                self.scope.push((c.accu_var.clone(), accu.clone()));
                self.scope.push((c.iter_var.clone(), var1));
                if let Some(v2) = &c.iter_var2 {
                    self.scope.push((v2.clone(), var2));
                }
                let cond = self.expr(&c.loop_cond);
                let mut s = Subst::new();
                if !assign(&Bool, &cond, &mut s) {
                    self.err(
                        c.loop_cond.id,
                        format!("expected type 'bool' but found '{cond}'"),
                    );
                }
                let step = self.expr(&c.loop_step);
                // The accumulator takes the step's type when the init was only a shape
                // (`[]` for map/filter).
                let accu = match (&accu, &step) {
                    (List(a), List(_)) if matches!(**a, Param(_)) => step.clone(),
                    _ => accu,
                };
                let n = self.scope.len() - 1 - usize::from(c.iter_var2.is_some());
                self.scope.truncate(n);
                self.scope.pop();
                self.scope.push((c.accu_var.clone(), accu));
                let result = self.expr(&c.result);
                self.scope.pop();
                result
            }
        }
    }

    fn select(&mut self, id: u64, operand: &Ty, field: &str) -> Ty {
        match operand {
            Map(k, v) => {
                let mut s = Subst::new();
                if assign(k, &String, &mut s) {
                    (**v).clone()
                } else {
                    self.err(
                        id,
                        format!("type '{operand}' does not support field selection"),
                    )
                }
            }
            Dyn | Any | Error | Param(_) => Dyn,
            Opt(inner) => {
                let inner = (**inner).clone();
                opt(self.select(id, &inner, field))
            }
            UserInfo => match field {
                "username" | "uid" => String,
                "groups" => list(String),
                "extra" => map(String, list(String)),
                _ => self.err(id, format!("undefined field '{field}'")),
            },
            other => {
                let other = other.clone();
                self.err(
                    id,
                    format!("type '{other}' does not support field selection"),
                )
            }
        }
    }

    fn call(&mut self, e: &IdedExpr, call: &cel::common::ast::CallExpr) -> Ty {
        let name = call.func_name.as_str();
        // `base.fn(…)` where `base` is a namespace (`optional.of`, `sets.contains`), not a value.
        if let Some(target) = &call.target
            && let Some(ns) = qualified(target)
            && self
                .lookup(ns.split('.').next().unwrap_or_default())
                .is_none()
        {
            let full = format!("{ns}.{name}");
            if overloads(&full, false, self.features).is_some() {
                let args: Vec<Ty> = call.args.iter().map(|a| self.expr(a)).collect();
                return self.resolve(e.id, &full, false, args);
            }
        }
        if let Some(t) = self.two_var(call) {
            return t;
        }
        if name == "_?._" && call.args.len() == 2 {
            let operand = self.expr(&call.args[0]);
            let field = match &call.args[1].expr {
                Expr::Literal(LiteralValue::String(s)) => s.to_string(),
                _ => std::string::String::new(),
            };
            let inner = match operand {
                Opt(t) => self.select(e.id, &t, &field),
                t => self.select(e.id, &t, &field),
            };
            return opt(inner);
        }
        let mut args = Vec::new();
        if let Some(t) = &call.target {
            args.push(self.expr(t));
        }
        let format = name == "format" && call.target.is_some();
        self.format_depth += usize::from(format);
        for a in &call.args {
            args.push(self.expr(a));
        }
        self.format_depth -= usize::from(format);
        self.resolve(e.id, name, call.target.is_some(), args)
    }

    /// The two-variable comprehensions (`all(k, v, …)`, `transformList(i, v, …)`, …), which
    /// the `cel` crate's parser leaves as plain calls: typed here as cel-go expands them.
    fn two_var(&mut self, call: &cel::common::ast::CallExpr) -> Option<Ty> {
        let name = call.func_name.as_str();
        let target = call.target.as_ref()?;
        let quantifier = matches!(name, "all" | "exists" | "existsOne" | "exists_one");
        let transform = matches!(name, "transformList" | "transformMap" | "transformMapEntry");
        if !self.features.two_var
            || !(quantifier && call.args.len() == 3
                || transform && matches!(call.args.len(), 3 | 4))
        {
            return None;
        }
        let (Expr::Ident(v1), Expr::Ident(v2)) = (&call.args[0].expr, &call.args[1].expr) else {
            return None;
        };
        let range = self.expr(target);
        let (t1, t2) = match &range {
            List(t) => (Int, (**t).clone()),
            Map(k, v) => ((**k).clone(), (**v).clone()),
            Dyn | Error | Param(_) => (Dyn, Dyn),
            other => {
                let other = other.clone();
                return Some(self.err(
                    target.id,
                    format!("expression of type '{other}' cannot be range of a comprehension (must be list, map, or dynamic)"),
                ));
            }
        };
        self.scope.push((v1.clone(), t1.clone()));
        self.scope.push((v2.clone(), t2));
        let mut last = Dyn;
        for (k, body) in call.args[2..].iter().enumerate() {
            let t = self.expr(body);
            let must_be_bool = quantifier || (call.args.len() == 4 && k == 0);
            let mut s = Subst::new();
            if must_be_bool && !assign(&Bool, &t, &mut s) {
                self.err(body.id, format!("expected type 'bool' but found '{t}'"));
            }
            last = t;
        }
        self.scope.truncate(self.scope.len() - 2);
        Some(match name {
            "transformList" => list(last),
            "transformMap" => map(t1, last),
            "transformMapEntry" => map(Dyn, Dyn),
            _ => Bool,
        })
    }

    fn resolve(&mut self, id: u64, name: &str, member: bool, args: Vec<Ty>) -> Ty {
        let Some(sigs) = overloads(name, member, self.features) else {
            return self.err(
                id,
                format!("undeclared reference to '{name}' (in container '')"),
            );
        };
        if args.contains(&Error) {
            return Error;
        }
        let mut result: Option<Ty> = None;
        let mut matched = 0;
        let mut commit = None;
        for Sig(params, r) in &sigs {
            if params.len() != args.len() {
                continue;
            }
            let mut s = self.free.clone();
            if params.iter().zip(&args).all(|(p, a)| assign(p, a, &mut s)) {
                // An overload parameter nothing bound stays open, to bind later.
                for n in [0u16, 1] {
                    if let std::collections::hash_map::Entry::Vacant(v) = s.entry(n) {
                        v.insert(self.fresh());
                    }
                }
                let r = substitute(r, &s);
                matched += 1;
                commit = Some(s);
                result = Some(match result {
                    None => r,
                    Some(prev) if prev == r => prev,
                    Some(_) => Dyn,
                });
            }
        }
        if matched == 1
            && let Some(s) = commit
        {
            self.free = s.into_iter().filter(|(k, _)| *k >= FREE_BASE).collect();
        }
        match result {
            Some(t) => t,
            None => {
                let shown = |ts: &[Ty]| {
                    ts.iter()
                        .map(|t| closed(t).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let signature = if member && !args.is_empty() {
                    format!("{}.({})", args[0], shown(&args[1..]))
                } else {
                    format!("({})", shown(&args))
                };
                self.err(
                    id,
                    format!("found no matching overload for '{name}' applied to '{signature}'"),
                )
            }
        }
    }
}

/// The sub-expressions of `e`, every one (a comprehension's range, init, condition, step and
/// result; a map's keys and values; a struct's fields): the one walk over the tree.
pub fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Select(s) => vec![&*s.operand],
        Expr::Call(c) => c
            .target
            .as_deref()
            .into_iter()
            .chain(c.args.iter())
            .collect(),
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m.entries.iter().flat_map(entry_children).collect(),
        Expr::Struct(st) => st.entries.iter().flat_map(entry_children).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn entry_children(en: &cel::common::ast::IdedEntryExpr) -> Vec<&IdedExpr> {
    match &en.expr {
        EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
        EntryExpr::StructField(sf) => vec![&sf.value],
    }
}

/// `a.b.c` as a dotted name, if `e` is only identifiers and field selections.
fn qualified(e: &IdedExpr) -> Option<std::string::String> {
    match &e.expr {
        Expr::Ident(n) => Some(n.clone()),
        Expr::Select(s) if !s.test => qualified(&s.operand).map(|q| format!("{q}.{}", s.field)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(src: &str, var: &'static str) -> Result<std::string::String, std::string::String> {
        let e = cel::parser::Parser::new()
            .enable_optional_syntax(true)
            .parse(src)
            .map_err(|e| e.to_string())?;
        let t = if var == "user" {
            UserInfo
        } else {
            claims_type()
        };
        check(&e, var, t, Features::for_minor(36))
            .map(|t| t.to_string())
            .map_err(|e| e[0].message.clone())
    }

    #[test]
    fn the_api_server_verdicts_of_the_third_round() {
        // Refused by kube-apiserver 1.36.2 at start (verified-by-running, third round).
        for e in [
            "claims.groups.filter(g, g.startsWith('k8s_'))",
            "claims.groups.map(g, 'k:' + g)",
            "claims.groups.exists(g, g == 'a') ? 'x' : 'y'",
        ] {
            let err = ty(e, "claims").unwrap_err();
            assert_eq!(
                err,
                "expression of type 'any' cannot be range of a comprehension (must be list, map, or dynamic)",
                "{e}"
            );
        }
        // Accepted.
        for (e, want) in [
            (
                "dyn(claims.groups).filter(g, g.startsWith('k8s_'))",
                "list(dyn)",
            ),
            ("dyn(claims.groups).map(g, g.lowerAscii())", "list(string)"),
            ("claims.roles.split(',')", "list(string)"),
            ("claims.groups + ['extra']", "list(string)"),
            ("size(claims.groups) > 0 ? ['y'] : []", "list(string)"),
            (
                "has(claims.preferred_username) ? claims.preferred_username : claims.sub",
                "any",
            ),
            ("'kanidm:' + claims.preferred_username", "string"),
            ("claims.sub + 1", "int"),
            ("123", "int"),
            ("claims.?email.orValue('')", "any"),
            ("claims.a.b.map(x, x)", "list(dyn)"),
        ] {
            assert_eq!(ty(e, "claims").as_deref(), Ok(want), "{e}");
        }
    }

    #[test]
    fn errors_in_cel_gos_words() {
        assert_eq!(
            ty("user.username", "claims").unwrap_err(),
            "undeclared reference to 'user' (in container '')"
        );
        assert_eq!(
            ty("'a' + 1", "claims").unwrap_err(),
            "found no matching overload for '_+_' applied to '(string, int)'"
        );
        assert_eq!(
            ty("claims.sub.foo()", "claims").unwrap_err(),
            "undeclared reference to 'foo' (in container '')"
        );
        assert_eq!(
            ty("user.name", "user").unwrap_err(),
            "undefined field 'name'"
        );
        assert_eq!(
            ty("user.groups.all(g, g != 'x')", "user").as_deref(),
            Ok("bool")
        );
        assert_eq!(
            ty("'abc'.startsWith(1)", "claims").unwrap_err(),
            "found no matching overload for 'startsWith' applied to 'string.(int)'"
        );
        assert_eq!(
            ty("optional.of(1).orValue(2)", "claims").as_deref(),
            Ok("int")
        );
        assert_eq!(
            ty("type(claims.x) == string", "claims").as_deref(),
            Ok("bool")
        );
        assert_eq!(
            ty("[1, 'a']", "claims").unwrap_err(),
            "expected type 'int' but found 'string'"
        );
        assert_eq!(
            ty("[claims.a, 'a']", "claims").unwrap_err(),
            "expected type 'any' but found 'string'"
        );
        assert_eq!(
            ty("'%s'.format([claims.a.b, 'a'])", "claims").as_deref(),
            Ok("string")
        );
        assert_eq!(ty("true ? 'a' : claims.x", "claims").as_deref(), Ok("any"));
        assert_eq!(
            ty("claims.?x.y", "claims").as_deref(),
            Ok("optional_type(dyn)")
        );
        assert_eq!(
            ty("claims.all(k, v, k != '')", "claims").as_deref(),
            Ok("bool")
        );
        assert_eq!(
            ty("claims.x.all(k, v, true)", "claims").unwrap_err(),
            "expression of type 'any' cannot be range of a comprehension (must be list, map, or dynamic)"
        );
    }
}
