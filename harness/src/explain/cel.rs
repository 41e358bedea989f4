//! CEL as the API server's JWT authenticator uses it, through the `cel` crate: the standard
//! library with optional types, plus the strings, lists, math and base64 extensions.
//! Kubernetes' own libraries (`url()`, `sets`, `quantity()`, `ip()`, …) are not there: an
//! expression that calls one is reported as unsupported, never guessed.

use super::cel_types;
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

/// The parser the API server's environment amounts to: the standard macros only (the
/// extensions above add macros such as `math.greatest` that the API server does not have).
fn check_env() -> Option<Arc<Env>> {
    static ENV: OnceLock<Option<Arc<Env>>> = OnceLock::new();
    ENV.get_or_init(|| Some(Arc::new(Env::stdlib()))).clone()
}

/// `f`, with a panic inside the CEL library turned into an answer: a user's expression must
/// never take explain down.
fn guarded<T>(f: impl FnOnce() -> T, on_panic: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| on_panic())
}

/// The result type an expression must have: `bool` for claim and user validation rules,
/// anything for mappings (checked per token instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Bool,
    Any,
}

/// How an internal error of the API server's CEL starts (its field error is then `Internal
/// error`, not `Invalid value`).
pub const INTERNAL: &str = "program instantiation failed: ";

/// cel-go's parser limits, which the API server keeps: code points, and AST depth.
pub const MAX_CODE_POINTS: usize = 100_000;
const MAX_RECURSION_DEPTH: u16 = 250;
/// Deep expressions recurse deeply (the parser, our checker, dropping the tree): CEL work runs
/// on a thread with this much stack, never on the caller's.
const CEL_STACK_BYTES: usize = 256 << 20;
/// An evaluation that takes longer has long passed the API server's per-call cost limit.
const EVAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Compile `expr` as kube-apiserver `1.<minor>` does when it loads a configuration: parse
/// (with cel-go's limits), type-check with `claims`/`user` declared as the API server declares
/// them, and check the result type. The error is worded as the API server's field error
/// detail (`compilation failed: ERROR: <input>:1:7: …`, `must evaluate to bool`).
pub fn check(expr: &str, vars: Vars, want: Want, minor: u32) -> Result<(), String> {
    let expr = expr.to_string();
    on_cel_thread(move || {
        guarded(
            || check_inner(&expr, vars, want, minor),
            || {
                Err(
                    "the CEL library failed on this expression (a bug there, not in the config)"
                        .into(),
                )
            },
        )
    })
    .unwrap_or_else(|| Err("the CEL check could not run".into()))
}

/// Does `expr` read the claim `field` as the API server's check for it looks (a field
/// selection `claims.<field>`, also inside `has()`, or `claims.?<field>`)?
pub fn selects_claim(expr: &str, field: &str) -> bool {
    let (expr, field) = (expr.to_string(), field.to_string());
    on_cel_thread(move || {
        guarded(
            || {
                let Some(env) = env() else { return false };
                env.parser()
                    .max_recursion_depth(MAX_RECURSION_DEPTH)
                    .parse(&expr)
                    .is_ok_and(|ast| walk_selects(&ast, &field))
            },
            || false,
        )
    })
    .unwrap_or(false)
}

fn walk_selects(root: &cel::IdedExpr, field: &str) -> bool {
    use cel::common::ast::{Expr, LiteralValue};
    let on_claims = |x: &cel::IdedExpr| matches!(&x.expr, Expr::Ident(n) if n == "claims");
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        let hit = match &e.expr {
            Expr::Select(s) => s.field == field && on_claims(&s.operand),
            Expr::Call(c) => {
                c.func_name == "_?._"
                    && c.args.len() == 2
                    && on_claims(&c.args[0])
                    && matches!(&c.args[1].expr, Expr::Literal(LiteralValue::String(s)) if s.to_string() == field)
            }
            _ => false,
        };
        if hit {
            return true;
        }
        stack.extend(cel_types::children(e));
    }
    false
}

/// Run `f` on a thread with a large stack, and wait for it.
fn on_cel_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::Builder::new()
        .name("cel".into())
        .stack_size(CEL_STACK_BYTES)
        .spawn(f)
        .ok()?
        .join()
        .ok()
}

fn check_inner(expr: &str, vars: Vars, want: Want, minor: u32) -> Result<(), String> {
    let size = expr.chars().count();
    if size > MAX_CODE_POINTS {
        return Err(format!(
            "compilation failed: ERROR: <input>:-1:0: expression code point size exceeds limit: size: {size}, limit {MAX_CODE_POINTS}"
        ));
    }
    let env = check_env().ok_or("the CEL environment could not be built")?;
    // The `cel` crate counts one level more than cel-go: 249 here is cel-go's 250.
    let (ast, info) = env
        .parser()
        .max_recursion_depth(MAX_RECURSION_DEPTH - 1)
        .parse_with_source_info(expr)
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("Recursion limit") {
                return format!(
                    "compilation failed: ERROR: <input>:-1:0: expression recursion limit exceeded: {MAX_RECURSION_DEPTH}"
                );
            }
            let first = text.lines().next().unwrap_or("syntax error");
            format!("compilation failed: {}", lexer_column(first))
        })?;
    if depth(&ast) > MAX_VISIT_DEPTH {
        return Err(
            "compilation failed: ERROR: <input>:-1:0: max recursion depth exceeded".to_string(),
        );
    }
    if let Some(col) = exists_one_two_args(expr) {
        return Err(format!(
            "compilation failed: ERROR: <input>:1:{col}: undeclared reference to 'existsOne' (in container ''){}",
            snippet(expr, 1, col)
        ));
    }
    let (var_ty, features) = (
        match vars {
            Vars::Claims => cel_types::claims_type(),
            Vars::User => cel_types::Ty::UserInfo,
        },
        cel_types::Features::for_minor(minor),
    );
    match cel_types::check(&ast, vars.name(), var_ty, features) {
        Err(errors) => {
            let mut located: Vec<(usize, usize, &str)> = errors
                .iter()
                .map(|e| {
                    let (line, col) = location(expr, info.offset_for(e.id).map(|o| o.0));
                    (line, col, e.message.as_str())
                })
                .collect();
            located.sort_by_key(|(l, c, _)| (*l, *c));
            let text: Vec<String> = located
                .iter()
                .map(|(l, c, m)| format!("ERROR: <input>:{l}:{c}: {m}{}", snippet(expr, *l, *c)))
                .collect();
            Err(format!("compilation failed: {}", text.join("\n")))
        }
        Ok(t) if want == Want::Bool && t != cel_types::Ty::Bool => {
            Err("must evaluate to bool".to_string())
        }
        Ok(_) => match cel_types::folding_error(&ast) {
            Some(e) => Err(format!("{INTERNAL}{e}")),
            None => Ok(()),
        },
    }
}

/// The `cel` crate puts a lexer error (an unsupported character such as `` ` ``) one column
/// before where cel-go puts it.
fn lexer_column(line: &str) -> String {
    if !line.contains("unsupported syntax") {
        return line.to_string();
    }
    let re = regex::Regex::new(r"^ERROR: <input>:(\d+):(\d+): ").ok();
    match re.as_ref().and_then(|r| r.captures(line)) {
        Some(c) => {
            let col: usize = c[2].parse().unwrap_or(0);
            format!(
                "ERROR: <input>:{}:{}: {}",
                &c[1],
                col + 1,
                &line[c[0].len()..]
            )
        }
        None => line.to_string(),
    }
}

/// cel-go's parser counts nesting as it visits the parse tree, and stops past 250
/// (`max recursion depth exceeded`). Only some nodes count: field selections, member calls,
/// indexing, arithmetic, relations and the conditional; `&&`, `||`, `!`, negation, global
/// calls and literals do not (`claims` and 250 selections compile, 251 do not; so do 251
/// and 252 terms of `a + a + …`).
const MAX_VISIT_DEPTH: usize = 250;

/// That count over the (macro-expanded) tree, without recursing. A macro counts as the
/// member call it was; the nodes it expands into are partly counted, so an expression within
/// one or two levels of the limit through a macro may be judged differently (a caveat).
fn depth(root: &cel::IdedExpr) -> usize {
    use cel::common::ast::Expr;
    let mut max = 0;
    let mut stack: Vec<(&cel::IdedExpr, usize)> = vec![(root, 0)];
    while let Some((e, d)) = stack.pop() {
        let counted = match &e.expr {
            Expr::Select(_) | Expr::Comprehension(_) => 1,
            Expr::Call(c) => match c.func_name.as_str() {
                "_&&_" | "_||_" | "!_" | "-_" | "@not_strictly_false" => 0,
                _ if c.target.is_some() => 1,
                "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "_<_" | "_<=_" | "_>_" | "_>=_"
                | "_==_" | "_!=_" | "@in" | "_[_]" | "_[?_]" | "_?_:_" | "_?._" => 1,
                _ => 0,
            },
            _ => 0,
        };
        let d = d + counted;
        max = max.max(d);
        // A macro's expansion: only its range and step hold what was written.
        let children = match &e.expr {
            Expr::Comprehension(c) => vec![&c.iter_range, &c.loop_step],
            _ => cel_types::children(e),
        };
        stack.extend(children.into_iter().map(|x| (x, d)));
    }
    max
}

/// `x.existsOne(v, p)`: the API server has `exists_one` for that, and `existsOne` only with
/// two variables; the `cel` crate takes both. The 1-based column of the call's `(`.
fn exists_one_two_args(expr: &str) -> Option<usize> {
    if expr.contains('\n') {
        return None;
    }
    let chars: Vec<char> = expr.chars().collect();
    let word: Vec<char> = ".existsOne(".chars().collect();
    let mut i = 0;
    while i + word.len() <= chars.len() {
        if chars[i..i + word.len()] == word[..] {
            let open = i + word.len() - 1;
            let (mut level, mut commas, mut quote) = (0i32, 0, None::<char>);
            for &c in &chars[open..] {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '(' | '[' | '{') => level += 1,
                    (None, ')' | ']' | '}') => {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    (None, ',') if level == 1 => commas += 1,
                    _ => {}
                }
            }
            if commas == 1 {
                return Some(open + 1);
            }
        }
        i += 1;
    }
    None
}

/// cel-go's two lines under an error: the source line, and a caret under the column
/// (multi-byte characters drawn full width, as cel-go draws them).
fn snippet(expr: &str, line: usize, col: usize) -> String {
    let Some(src) = expr.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let mut marker = String::new();
    let mut chars = src.chars();
    for _ in 1..col {
        marker.push(match chars.next() {
            Some(ch) if ch.len_utf8() > 1 => '．',
            _ => '.',
        });
    }
    marker.push(match chars.next() {
        Some(ch) if ch.len_utf8() > 1 => '＾',
        _ => '^',
    });
    format!("\n | {src}\n | {marker}")
}

/// cel-go's `<input>:line:column` of a character offset: line from 1, column from 1 as it
/// prints them.
fn location(expr: &str, offset: Option<u32>) -> (usize, usize) {
    let Some(offset) = offset else { return (1, 1) };
    let before: Vec<char> = expr.chars().take(offset as usize).collect();
    let line = 1 + before.iter().filter(|c| **c == '\n').count();
    let col = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
    (line, col)
}

/// Evaluate `expr` with `vars` bound to `value`, on a thread of its own with a deadline: the
/// `cel` crate counts no cost, the API server stops an expression at a cost of 1,000,000
/// (`PerCallLimit`). An evaluation still running after the deadline is left to finish on
/// its own thread and reported as the API server's cost-limit failure.
pub fn eval(expr: &str, vars: Vars, value: &serde_json::Value) -> Eval {
    if expr.chars().count() > MAX_CODE_POINTS {
        return Eval::Error("expression code point size exceeds limit".into());
    }
    let (expr, value) = (expr.to_string(), value.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("cel-eval".into())
        .stack_size(CEL_STACK_BYTES)
        .spawn(move || {
            let out = guarded(
                || eval_inner(&expr, vars, &value),
                || Eval::Unsupported("the CEL library failed on this expression".into()),
            );
            let _ = tx.send(out);
        });
    if spawned.is_err() {
        return Eval::Unsupported("the CEL evaluation could not start".into());
    }
    match rx.recv_timeout(EVAL_DEADLINE) {
        Ok(out) => out,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Eval::Error(format!(
            "operation cancelled: actual cost limit exceeded (explain stopped waiting after {} s; the API server stops at a cost of 1000000)",
            EVAL_DEADLINE.as_secs()
        )),
        Err(_) => Eval::Unsupported("the CEL library failed on this expression".into()),
    }
}

fn eval_inner(expr: &str, vars: Vars, value: &serde_json::Value) -> Eval {
    let Some(env) = env() else {
        return Eval::Unsupported("the CEL environment could not be built".into());
    };
    let ast = match env
        .parser()
        .max_recursion_depth(MAX_RECURSION_DEPTH)
        .parse(expr)
    {
        Ok(a) => a,
        Err(e) => return Eval::Error(format!("compilation failed: {e}")),
    };
    let mut ctx = Context::with_env(env);
    if let Err(e) = ctx.add_variable(vars.name(), value.clone()) {
        return Eval::Unsupported(format!(
            "the {} could not be given to CEL: {e}",
            vars.name()
        ));
    }
    let functions: Vec<String> = ast
        .references()
        .functions()
        .into_iter()
        .map(str::to_string)
        .collect();
    match Value::resolve(&ast, &ctx) {
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
                "dyn(claims.groups).map(g, 'k:' + g)",
                Out::Strings(vec!["k:g1".into(), "k:g2".into()]),
            ),
            ("has(claims.hd)", Out::Bool(false)),
            ("claims.sub.lowerAscii()", Out::String("u".into())),
        ];
        for (e, want) in cases {
            check(e, Vars::Claims, Want::Any, 36).unwrap();
            assert_eq!(eval(e, Vars::Claims, &claims), Eval::Ok(want), "{e}");
        }
        assert!(
            matches!(eval("claims.hd", Vars::Claims, &claims), Eval::Error(m) if m.contains("hd"))
        );
        assert!(
            matches!(eval("url(claims.sub).getHost() == 'x'", Vars::Claims, &claims), Eval::Unsupported(m) if m.contains("`url`"))
        );
        assert!(
            check("user.username", Vars::Claims, Want::Any, 36)
                .unwrap_err()
                .contains("'user'")
        );
        assert!(
            check("claims.sub +", Vars::Claims, Want::Any, 36)
                .unwrap_err()
                .contains("compilation failed")
        );
    }
}
