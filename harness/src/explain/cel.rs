//! CEL as the API server's JWT authenticator uses it, through the `cel` crate: the standard
//! library with optional types, plus the strings, lists, math and base64 extensions.
//! Kubernetes' own libraries (`url()`, `sets`, `quantity()`, `ip()`, …) are not there: an
//! expression that calls one is reported as unsupported, never guessed.

use cel::{Context, Env, ExecutionError, Value};
use std::sync::{Arc, OnceLock};

/// Which variable an expression sees: `claims` (claim rules and mappings) or `user`
/// (userValidationRules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vars {
    Claims,
    User,
}

impl Vars {
    fn name(self) -> &'static str {
        match self {
            Vars::Claims => "claims",
            Vars::User => "user",
        }
    }
}

/// What an expression gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Bool(bool),
    String(String),
    Strings(Vec<String>),
    Null,
    /// Any other type, by name.
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Eval {
    Ok(Out),
    /// The expression failed at run time (the API server fails the same way).
    Error(String),
    /// The expression uses something this CEL library does not have: no verdict.
    Unsupported(String),
}

fn env() -> Option<Arc<Env>> {
    static ENV: OnceLock<Option<Arc<Env>>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings).ok()?;
        env.add_extension(cel::extensions::lists).ok()?;
        env.add_extension(cel::extensions::math).ok()?;
        env.add_extension(cel::extensions::encoders).ok()?;
        Some(Arc::new(env))
    })
    .clone()
}

/// `f`, with a panic inside the CEL library turned into an answer: a user's expression must
/// never take explain down.
fn guarded<T>(f: impl FnOnce() -> T, on_panic: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| on_panic())
}

/// Compile `expr` and check it names no variable but `vars`: what the API server checks when
/// it loads a configuration.
pub fn check(expr: &str, vars: Vars) -> Result<(), String> {
    guarded(
        || check_inner(expr, vars),
        || Err("the CEL library failed on this expression (a bug there, not in the config)".into()),
    )
}

fn check_inner(expr: &str, vars: Vars) -> Result<(), String> {
    let env = env().ok_or("the CEL environment could not be built")?;
    let program = env.compile(expr).map_err(|e| {
        format!(
            "compilation failed: {}",
            e.to_string().lines().next().unwrap_or("syntax error")
        )
    })?;
    for v in program.references().variables() {
        if v != vars.name() && !bound_by_macro(expr, v) {
            return Err(format!(
                "compilation failed: undeclared reference to '{v}' (only `{}` is defined here)",
                vars.name()
            ));
        }
    }
    Ok(())
}

/// `v` is a macro's loop variable (`list.map(v, …)`, `.all(v, …)`, `cel.bind(v, …)`), which
/// the parser reports as a reference like any other.
fn bound_by_macro(expr: &str, v: &str) -> bool {
    ["all", "exists", "exists_one", "map", "filter", "bind"]
        .iter()
        .any(|m| {
            expr.match_indices(&format!("{m}(")).any(|(i, _)| {
                expr[i + m.len() + 1..]
                    .trim_start()
                    .strip_prefix(v)
                    .is_some_and(|rest| rest.trim_start().starts_with(','))
            })
        })
}

/// Evaluate `expr` with `vars` bound to `value`.
pub fn eval(expr: &str, vars: Vars, value: &serde_json::Value) -> Eval {
    guarded(
        || eval_inner(expr, vars, value),
        || Eval::Unsupported("the CEL library failed on this expression".into()),
    )
}

fn eval_inner(expr: &str, vars: Vars, value: &serde_json::Value) -> Eval {
    let Some(env) = env() else {
        return Eval::Unsupported("the CEL environment could not be built".into());
    };
    let program = match env.compile(expr) {
        Ok(p) => p,
        Err(e) => return Eval::Error(format!("compilation failed: {e}")),
    };
    let mut ctx = Context::with_env(env);
    if let Err(e) = ctx.add_variable(vars.name(), value.clone()) {
        return Eval::Unsupported(format!(
            "the {} could not be given to CEL: {e}",
            vars.name()
        ));
    }
    let functions: Vec<String> = program
        .references()
        .functions()
        .into_iter()
        .map(str::to_string)
        .collect();
    match program.execute(&ctx) {
        Ok(v) => Eval::Ok(out(&v)),
        Err(ExecutionError::UndeclaredReference(name)) if functions.contains(&name) => {
            Eval::Unsupported(format!(
                "the CEL function `{name}` (a Kubernetes CEL library) is not in this explain's CEL implementation (the `cel` crate); the API server's answer cannot be predicted here"
            ))
        }
        Err(e) => Eval::Error(e.to_string()),
    }
}

fn out(v: &Value) -> Out {
    match v {
        Value::Bool(b) => Out::Bool(*b),
        Value::String(s) => Out::String(s.to_string()),
        Value::Null => Out::Null,
        Value::List(l) => {
            let strings: Option<Vec<String>> = l
                .iter()
                .map(|x| match x {
                    Value::String(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect();
            strings.map_or_else(|| Out::Other("list".into()), Out::Strings)
        }
        other => Out::Other(format!("{:?}", other.type_of())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubernetes_style_expressions() {
        let claims = json!({"email": "a@b", "groups": ["g1", "g2"], "sub": "u"});
        let cases = [
            (
                "claims.?email_verified.orValue(true) == true",
                Out::Bool(true),
            ),
            ("claims.email.split('@')[0]", Out::String("a".into())),
            (
                "claims.groups.map(g, 'k:' + g)",
                Out::Strings(vec!["k:g1".into(), "k:g2".into()]),
            ),
            ("has(claims.hd)", Out::Bool(false)),
            ("claims.sub.lowerAscii()", Out::String("u".into())),
        ];
        for (e, want) in cases {
            check(e, Vars::Claims).unwrap();
            assert_eq!(eval(e, Vars::Claims, &claims), Eval::Ok(want), "{e}");
        }
        assert!(
            matches!(eval("claims.hd", Vars::Claims, &claims), Eval::Error(m) if m.contains("hd"))
        );
        assert!(
            matches!(eval("url(claims.sub).getHost() == 'x'", Vars::Claims, &claims), Eval::Unsupported(m) if m.contains("`url`"))
        );
        assert!(
            check("user.username", Vars::Claims)
                .unwrap_err()
                .contains("'user'")
        );
        assert!(
            check("claims.sub +", Vars::Claims)
                .unwrap_err()
                .contains("compilation failed")
        );
    }
}
