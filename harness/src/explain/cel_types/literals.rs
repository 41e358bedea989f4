//! What cel-go checks after a clean type check, on literal arguments: constant folding of
//! conversions (an internal error at start) and Go's duration syntax.

use super::*;

/// What cel-go's program planner refuses when it folds constants (`OptOptimize`): a type
/// conversion of a literal that fails. The API server reports it as an internal error
/// (`program instantiation failed: unsigned integer overflow`), at start.
pub fn folding_error(e: &IdedExpr) -> Option<std::string::String> {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if let Expr::Call(c) = &e.expr
            && c.target.is_none()
            && let [a] = c.args.as_slice()
            && let Some(v) = literal_value(a)
            && let Some(err) = convert(&c.func_name, &v)
        {
            return Some(err);
        }
        stack.extend(children(e));
    }
    None
}

/// A literal, also a negated number literal.
pub(super) fn literal_value(e: &IdedExpr) -> Option<LiteralValue> {
    match &e.expr {
        Expr::Literal(l) => Some(l.clone()),
        Expr::Call(c) if c.func_name == "-_" && c.target.is_none() && c.args.len() == 1 => {
            match literal_value(&c.args[0])? {
                LiteralValue::Int(i) => Some(LiteralValue::Int(i.inner().checked_neg()?.into())),
                LiteralValue::Double(d) => Some(LiteralValue::Double((-*d.inner()).into())),
                _ => None,
            }
        }
        _ => None,
    }
}

pub(super) fn convert(func: &str, v: &LiteralValue) -> Option<std::string::String> {
    use LiteralValue as L;
    let conversion =
        |from: &str, to: &str| Some(format!("type conversion error from '{from}' to '{to}'"));
    match (func, v) {
        ("int", L::String(s)) if s.to_string().parse::<i64>().is_err() => {
            conversion("string", "int")
        }
        ("int", L::Double(d)) => {
            let d = *d.inner();
            (d.is_nan() || d <= -9.223_372_036_854_776e18 || d >= 9.223_372_036_854_776e18)
                .then(|| "integer overflow".into())
        }
        ("int", L::UInt(u)) if *u.inner() > i64::MAX as u64 => Some("integer overflow".into()),
        ("uint", L::Int(i)) if *i.inner() < 0 => Some("unsigned integer overflow".into()),
        ("uint", L::Double(d)) => {
            let d = *d.inner();
            (d.is_nan() || !(0.0..1.844_674_407_370_955_2e19).contains(&d))
                .then(|| "unsigned integer overflow".into())
        }
        ("uint", L::String(s)) if s.to_string().parse::<u64>().is_err() => {
            conversion("string", "uint")
        }
        ("double", L::String(s)) if s.to_string().parse::<f64>().is_err() => {
            conversion("string", "double")
        }
        ("bool", L::String(s))
            if !matches!(
                s.to_string().as_str(),
                "1" | "t"
                    | "T"
                    | "TRUE"
                    | "true"
                    | "True"
                    | "0"
                    | "f"
                    | "F"
                    | "FALSE"
                    | "false"
                    | "False"
            ) =>
        {
            conversion("string", "bool")
        }
        ("string", L::Bytes(b)) if std::str::from_utf8(b.as_ref()).is_err() => {
            Some("invalid UTF-8 in bytes, cannot convert to string".into())
        }
        _ => None,
    }
}

/// Go's `time.ParseDuration` syntax: `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+`, or `0`.
pub(super) fn go_duration_ok(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit_end],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_end..];
    }
    true
}
