//! Kubernetes' part of a token's checks, after go-oidc verified it: claim validation rules
//! (required claims first, then CEL), the username, groups, uid and extra mappings (plus
//! the `jti` credential id), then user validation rules. Each failure in the API server's
//! words (oidc.go).

use super::cel::{self, Eval, Out, Vars};
use super::config::{Authenticator, ClaimRule, Mapping};
use super::steps::{MappedUser, Outcome, Run, go_list};
use super::token::{Jwt, kind_of};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Kubernetes' part: claim rules, then the mappings, then the user rules.
pub(super) fn mapped(token: &Jwt, a: &Authenticator, r: &mut Run) -> Outcome {
    match map_user(token, a, r) {
        Ok(user) => Outcome::Accepted(user),
        Err(end) => end,
    }
}

/// A step's end: a failure in the API server's words, or an answer we cannot compute.
type Step<T> = Result<T, Outcome>;

fn map_user(token: &Jwt, a: &Authenticator, r: &mut Run) -> Step<MappedUser> {
    let claims = Value::Object(token.claims.clone());
    claim_rules(token, a, &claims, r)?;
    let username = username(token, &a.username, &claims, r)?;
    let groups = groups(token, a.groups.as_ref(), &claims, r)?;
    let uid = uid(token, a.uid.as_ref(), &claims, r)?;
    let extra = extra(token, &a.extra, &claims, r)?;
    // User rules see the user before `system:authenticated` is added.
    let user = json!({
        "username": username,
        "uid": uid.clone().unwrap_or_default(),
        "groups": groups,
        "extra": extra,
    });
    for rule in &a.user_rules {
        bool_rule(
            r,
            "user rule",
            "user info validation rule",
            &rule.expression,
            rule.message.as_deref(),
            Vars::User,
            &user,
        )?;
    }
    if a.user_rules.is_empty() {
        r.skip("user rules", "none");
    }
    let mut all_groups = groups;
    all_groups.push("system:authenticated".into());
    Ok(MappedUser {
        username,
        uid,
        groups: all_groups,
        extra,
    })
}

/// `expr`'s value, or the step's end: a run-time error, logged by the API server as
/// `oidc: error evaluating <what>: expression '…' resulted in error: …`, or a CEL function
/// this implementation lacks.
fn evaluate(
    r: &mut Run,
    step: &'static str,
    what: &str,
    label: &str,
    expr: &str,
    vars: Vars,
    value: &Value,
) -> Step<Out> {
    match cel::eval(expr, vars, value) {
        Eval::Ok(out) => Ok(out),
        Eval::Error(err) => Err(r.fail(
            step,
            format!("{label}{expr} → error: {err}"),
            format!("oidc: error evaluating {what}: expression '{expr}' resulted in error: {err}"),
        )),
        Eval::Unsupported(why) => Err(r.unknown(step, why)),
    }
}

/// An expression that gave the wrong type.
fn wrong_type(
    r: &mut Run,
    step: &'static str,
    what: &str,
    label: &str,
    expr: &str,
    got: &Out,
    want: &str,
) -> Outcome {
    r.fail(
        step,
        format!("{label}{expr} → {got:?}, not {want}"),
        format!("oidc: error evaluating {what}: expression '{expr}' must return {want}"),
    )
}

/// A CEL rule that must be true (claim and user validation rules).
fn bool_rule(
    r: &mut Run,
    step: &'static str,
    what: &str,
    expr: &str,
    message: Option<&str>,
    vars: Vars,
    value: &Value,
) -> Step<()> {
    match evaluate(r, step, what, "", expr, vars, value)? {
        Out::Bool(true) => {
            r.pass(step, format!("{expr} → true"));
            Ok(())
        }
        Out::Bool(false) => Err(r.fail(
            step,
            format!("{expr} → false"),
            format!(
                "oidc: error evaluating {what}: validation expression '{expr}' failed: {}",
                message.unwrap_or_default()
            ),
        )),
        other => Err(wrong_type(r, step, what, "", expr, &other, "a bool")),
    }
}

/// A claim the mapping reads must be a string.
fn string_claim<'t>(
    r: &mut Run,
    step: &'static str,
    token: &'t Jwt,
    claim: &str,
    parse: &str,
) -> Step<&'t str> {
    match token.claims.get(claim) {
        Some(Value::String(s)) => Ok(s),
        // Go decodes `null` into a string as "".
        Some(Value::Null) => Ok(""),
        None => Err(r.fail(
            step,
            format!("claim {claim} is not in the token"),
            format!("oidc: {parse} {claim:?}: claim not present"),
        )),
        Some(other) => Err(r.fail(
            step,
            format!("claim {claim} is {}, not a string", kind_of(other)),
            format!(
                "oidc: {parse} {claim:?}: json: cannot unmarshal {} into Go value of type string",
                kind_of(other)
            ),
        )),
    }
}

/// Claim/requiredValue rules first, then the CEL ones.
fn claim_rules(token: &Jwt, a: &Authenticator, claims: &Value, r: &mut Run) -> Step<()> {
    let (required, exprs): (Vec<&ClaimRule>, Vec<&ClaimRule>) = a
        .claim_rules
        .iter()
        .partition(|c| matches!(c, ClaimRule::Required { .. }));
    for rule in required.into_iter().chain(exprs) {
        match rule {
            ClaimRule::Required { claim, value } => match token.claims.get(claim) {
                None => {
                    return Err(r.fail(
                        "claim rule",
                        format!("{claim} is not in the token"),
                        format!("oidc: required claim {claim} not present in ID token"),
                    ));
                }
                Some(Value::String(got)) if got == value => {
                    r.pass("claim rule", format!("{claim} = {got:?}"))
                }
                Some(Value::String(got)) => {
                    return Err(r.fail(
                        "claim rule",
                        format!("{claim} = {got:?}, required {value:?}"),
                        format!(
                            "oidc: required claim {claim} value does not match. Got = {got}, want = {value}"
                        ),
                    ));
                }
                Some(other) => {
                    return Err(r.fail(
                        "claim rule",
                        format!("{claim} is {}, not a string", kind_of(other)),
                        format!(
                            "oidc: required claim {claim}: parse claim {claim}: json: cannot unmarshal {} into Go value of type string",
                            kind_of(other)
                        ),
                    ));
                }
            },
            ClaimRule::Expression {
                expression,
                message,
            } => bool_rule(
                r,
                "claim rule",
                "claim validation expression",
                expression,
                message.as_deref(),
                Vars::Claims,
                claims,
            )?,
        }
    }
    if a.claim_rules.is_empty() {
        r.skip("claim rules", "none");
    }
    Ok(())
}

fn username(token: &Jwt, m: &Mapping, claims: &Value, r: &mut Run) -> Step<String> {
    const WHAT: &str = "username claim expression";
    match m {
        Mapping::Claim { claim, prefix } => {
            let v = string_claim(r, "username", token, claim, "parse username claims")?;
            // With the username claim `email`, a present email_verified must be true.
            if claim == "email" {
                match token.claims.get("email_verified") {
                    None | Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        return Err(r.fail(
                            "username",
                            format!("email {v:?} but email_verified is false"),
                            "oidc: email not verified".into(),
                        ));
                    }
                    Some(other) => {
                        return Err(r.fail(
                            "username",
                            format!("email_verified is {}, not a boolean", kind_of(other)),
                            "oidc: parse 'email_verified' claim: json: cannot unmarshal into Go value of type bool".into(),
                        ));
                    }
                }
            }
            let name = format!("{prefix}{v}");
            r.pass(
                "username",
                format!("claim {claim} = {v:?}, prefix {prefix:?} → {name:?}"),
            );
            Ok(name)
        }
        Mapping::Expression(e) => match evaluate(r, "username", WHAT, "", e, Vars::Claims, claims)?
        {
            Out::String(s) if s.is_empty() => Err(r.fail(
                "username",
                format!("{e} → \"\""),
                "oidc: empty username via CEL expression is not allowed".into(),
            )),
            Out::String(s) => {
                r.pass("username", format!("{e} → {s:?}"));
                Ok(s)
            }
            other => Err(wrong_type(r, "username", WHAT, "", e, &other, "a string")),
        },
    }
}

fn groups(token: &Jwt, m: Option<&Mapping>, claims: &Value, r: &mut Run) -> Step<Vec<String>> {
    const WHAT: &str = "group claim expression";
    let mut groups = Vec::new();
    match m {
        None => r.skip("groups", "not mapped"),
        Some(Mapping::Claim { claim, prefix }) => match token.claims.get(claim) {
            None | Some(Value::Null) => r.pass(
                "groups",
                format!("claim {claim} not in the token: no groups"),
            ),
            Some(Value::String(s)) => {
                if !s.is_empty() {
                    groups.push(format!("{prefix}{s}"));
                }
                r.pass(
                    "groups",
                    format!("claim {claim} = {s:?}, prefix {prefix:?}"),
                );
            }
            Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
                groups.extend(
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(|g| format!("{prefix}{g}")),
                );
                r.pass(
                    "groups",
                    format!("claim {claim}: {} value(s), prefix {prefix:?}", list.len()),
                );
            }
            Some(other) => {
                return Err(r.fail(
                    "groups",
                    format!(
                        "claim {claim} is {}, not a string or list of strings",
                        kind_of(other)
                    ),
                    format!(
                        "oidc: parse groups claim {claim:?}: json: cannot unmarshal {} into Go value of type string",
                        kind_of(other)
                    ),
                ));
            }
        },
        Some(Mapping::Expression(e)) => {
            match evaluate(r, "groups", WHAT, "", e, Vars::Claims, claims)? {
                Out::String(s) => {
                    groups.extend((!s.is_empty()).then_some(s.clone()));
                    r.pass("groups", format!("{e} → {s:?}"));
                }
                Out::Strings(l) => {
                    r.pass("groups", format!("{e} → {} value(s)", l.len()));
                    groups.extend(l);
                }
                Out::Null => r.pass("groups", format!("{e} → null: no groups")),
                other => {
                    return Err(wrong_type(
                        r,
                        "groups",
                        WHAT,
                        "",
                        e,
                        &other,
                        "a string or a list of strings",
                    ));
                }
            }
        }
    }
    Ok(groups)
}

fn uid(token: &Jwt, m: Option<&Mapping>, claims: &Value, r: &mut Run) -> Step<Option<String>> {
    const WHAT: &str = "uid claim expression";
    let uid = match m {
        None => {
            r.skip("uid", "not mapped");
            return Ok(None);
        }
        Some(Mapping::Claim { claim, .. }) => {
            let s = string_claim(r, "uid", token, claim, "parse uid claim")?.to_string();
            r.pass("uid", format!("claim {claim} = {s:?}"));
            s
        }
        Some(Mapping::Expression(e)) => {
            match evaluate(r, "uid", WHAT, "", e, Vars::Claims, claims)? {
                Out::String(s) => {
                    r.pass("uid", format!("{e} → {s:?}"));
                    s
                }
                other => return Err(wrong_type(r, "uid", WHAT, "", e, &other, "a string")),
            }
        }
    };
    Ok(Some(uid))
}

/// The extra mappings (empty values dropped), then the credential id every token with a
/// `jti` gets.
fn extra(
    token: &Jwt,
    mappings: &[(String, String)],
    claims: &Value,
    r: &mut Run,
) -> Step<BTreeMap<String, Vec<String>>> {
    const WHAT: &str = "extra claim expression";
    let mut extra = BTreeMap::new();
    for (key, e) in mappings {
        let label = format!("{key}: ");
        let values = match evaluate(r, "extra", WHAT, &label, e, Vars::Claims, claims)? {
            Out::String(s) => vec![s],
            Out::Strings(l) => l,
            Out::Null => Vec::new(),
            other => {
                return Err(wrong_type(
                    r,
                    "extra",
                    WHAT,
                    &label,
                    e,
                    &other,
                    "a string or a list of strings",
                ));
            }
        };
        let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        if !values.is_empty() {
            extra.insert(key.clone(), values);
        }
    }
    if let Some(jti) = token.claim_str("jti").filter(|j| !j.is_empty()) {
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={jti}")],
        );
    }
    r.pass(
        "extra",
        if extra.is_empty() {
            "none".to_string()
        } else {
            extra
                .iter()
                .map(|(k, v)| format!("{k}={}", go_list(v)))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    Ok(extra)
}
