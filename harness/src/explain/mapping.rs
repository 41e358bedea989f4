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
    let claims = Value::Object(token.claims.clone());
    // Claim/requiredValue rules first, then the CEL ones.
    let (required, exprs): (Vec<&ClaimRule>, Vec<&ClaimRule>) = a
        .claim_rules
        .iter()
        .partition(|c| matches!(c, ClaimRule::Required { .. }));
    for rule in required.into_iter().chain(exprs) {
        match rule {
            ClaimRule::Required { claim, value } => match token.claims.get(claim) {
                None => {
                    return r.fail(
                        "claim rule",
                        format!("{claim} is not in the token"),
                        format!("oidc: required claim {claim} not present in ID token"),
                    );
                }
                Some(Value::String(got)) if got == value => {
                    r.pass("claim rule", format!("{claim} = {got:?}"))
                }
                Some(Value::String(got)) => {
                    return r.fail(
                        "claim rule",
                        format!("{claim} = {got:?}, required {value:?}"),
                        format!(
                            "oidc: required claim {claim} value does not match. Got = {got}, want = {value}"
                        ),
                    );
                }
                Some(other) => {
                    return r.fail(
                        "claim rule",
                        format!("{claim} is {}, not a string", kind_of(other)),
                        format!("oidc: required claim {claim}: parse claim {claim}: json: cannot unmarshal {} into Go value of type string", kind_of(other)),
                    );
                }
            },
            ClaimRule::Expression {
                expression,
                message,
            } => match cel::eval(expression, Vars::Claims, &claims) {
                Eval::Ok(Out::Bool(true)) => r.pass("claim rule", format!("{expression} → true")),
                Eval::Ok(Out::Bool(false)) => {
                    return r.fail(
                            "claim rule",
                            format!("{expression} → false"),
                            format!(
                                "oidc: error evaluating claim validation expression: validation expression '{expression}' failed: {}",
                                message.clone().unwrap_or_default()
                            ),
                        );
                }
                Eval::Ok(other) => {
                    return r.fail(
                            "claim rule",
                            format!("{expression} → {other:?}, not a bool"),
                            format!("oidc: error evaluating claim validation expression: expression '{expression}' must return a bool"),
                        );
                }
                Eval::Error(e) => {
                    return r.fail(
                            "claim rule",
                            format!("{expression} → error: {e}"),
                            format!("oidc: error evaluating claim validation expression: expression '{expression}' resulted in error: {e}"),
                        );
                }
                Eval::Unsupported(why) => return r.unknown("claim rule", why),
            },
        }
    }
    if a.claim_rules.is_empty() {
        r.skip("claim rules", "none");
    }
    // Username.
    let username = match &a.username {
        Mapping::Claim { claim, prefix } => {
            let v = match token.claims.get(claim) {
                None => {
                    return r.fail(
                        "username",
                        format!("claim {claim} is not in the token"),
                        format!("oidc: parse username claims {claim:?}: claim not present"),
                    );
                }
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return r.fail(
                        "username",
                        format!("claim {claim} is {}, not a string", kind_of(other)),
                        format!("oidc: parse username claims {claim:?}: json: cannot unmarshal {} into Go value of type string", kind_of(other)),
                    );
                }
            };
            if claim == "email" {
                match token.claims.get("email_verified") {
                    None => {}
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        return r.fail(
                            "username",
                            format!("email {v:?} but email_verified is false"),
                            "oidc: email not verified".into(),
                        );
                    }
                    Some(other) => {
                        return r.fail(
                            "username",
                            format!("email_verified is {}, not a boolean", kind_of(other)),
                            "oidc: parse 'email_verified' claim: json: cannot unmarshal into Go value of type bool".into(),
                        );
                    }
                }
            }
            let name = format!("{prefix}{v}");
            r.pass(
                "username",
                format!("claim {claim} = {v:?}, prefix {prefix:?} → {name:?}"),
            );
            name
        }
        Mapping::Expression(e) => match cel::eval(e, Vars::Claims, &claims) {
            Eval::Ok(Out::String(s)) if s.is_empty() => {
                return r.fail(
                    "username",
                    format!("{e} → \"\""),
                    "oidc: empty username via CEL expression is not allowed".into(),
                );
            }
            Eval::Ok(Out::String(s)) => {
                r.pass("username", format!("{e} → {s:?}"));
                s
            }
            Eval::Ok(other) => {
                return r.fail(
                    "username",
                    format!("{e} → {other:?}, not a string"),
                    format!("oidc: error evaluating username claim expression: expression '{e}' must return a string"),
                );
            }
            Eval::Error(err) => {
                return r.fail(
                    "username",
                    format!("{e} → error: {err}"),
                    format!("oidc: error evaluating username claim expression: expression '{e}' resulted in error: {err}"),
                );
            }
            Eval::Unsupported(why) => return r.unknown("username", why),
        },
    };
    // Groups.
    let mut groups = Vec::new();
    match &a.groups {
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
                return r.fail(
                    "groups",
                    format!("claim {claim} is {}, not a string or list of strings", kind_of(other)),
                    format!("oidc: parse groups claim {claim:?}: json: cannot unmarshal {} into Go value of type string", kind_of(other)),
                );
            }
        },
        Some(Mapping::Expression(e)) => match cel::eval(e, Vars::Claims, &claims) {
            Eval::Ok(Out::String(s)) => {
                groups.extend((!s.is_empty()).then_some(s.clone()));
                r.pass("groups", format!("{e} → {s:?}"));
            }
            Eval::Ok(Out::Strings(l)) => {
                r.pass("groups", format!("{e} → {} value(s)", l.len()));
                groups.extend(l);
            }
            Eval::Ok(Out::Null) => r.pass("groups", format!("{e} → null: no groups")),
            Eval::Ok(other) => {
                return r.fail(
                    "groups",
                    format!("{e} → {other:?}"),
                    format!("oidc: error evaluating group claim expression: expression '{e}' must return a string or a list of strings"),
                );
            }
            Eval::Error(err) => {
                return r.fail(
                    "groups",
                    format!("{e} → error: {err}"),
                    format!("oidc: error evaluating group claim expression: expression '{e}' resulted in error: {err}"),
                );
            }
            Eval::Unsupported(why) => return r.unknown("groups", why),
        },
    }
    // UID.
    let uid = match &a.uid {
        None => {
            r.skip("uid", "not mapped");
            None
        }
        Some(Mapping::Claim { claim, .. }) => match token.claims.get(claim) {
            Some(Value::String(s)) => {
                r.pass("uid", format!("claim {claim} = {s:?}"));
                Some(s.clone())
            }
            None => {
                return r.fail(
                    "uid",
                    format!("claim {claim} is not in the token"),
                    format!("oidc: parse uid claim {claim:?}: claim not present"),
                );
            }
            Some(other) => {
                return r.fail(
                    "uid",
                    format!("claim {claim} is {}", kind_of(other)),
                    format!("oidc: parse uid claim {claim:?}: json: cannot unmarshal {} into Go value of type string", kind_of(other)),
                );
            }
        },
        Some(Mapping::Expression(e)) => match cel::eval(e, Vars::Claims, &claims) {
            Eval::Ok(Out::String(s)) => {
                r.pass("uid", format!("{e} → {s:?}"));
                Some(s)
            }
            Eval::Ok(other) => {
                return r.fail(
                    "uid",
                    format!("{e} → {other:?}"),
                    format!("oidc: error evaluating uid claim expression: expression '{e}' must return a string"),
                );
            }
            Eval::Error(err) => {
                return r.fail(
                    "uid",
                    format!("{e} → error: {err}"),
                    format!("oidc: error evaluating uid claim expression: expression '{e}' resulted in error: {err}"),
                );
            }
            Eval::Unsupported(why) => return r.unknown("uid", why),
        },
    };
    // Extra, then the credential id every token with a `jti` gets.
    let mut extra = BTreeMap::new();
    for (key, e) in &a.extra {
        let values = match cel::eval(e, Vars::Claims, &claims) {
            Eval::Ok(Out::String(s)) => vec![s],
            Eval::Ok(Out::Strings(l)) => l,
            Eval::Ok(Out::Null) => Vec::new(),
            Eval::Ok(other) => {
                return r.fail(
                    "extra",
                    format!("{key}: {e} → {other:?}"),
                    format!("oidc: error evaluating extra claim expression: expression '{e}' must return a string or a list of strings"),
                );
            }
            Eval::Error(err) => {
                return r.fail(
                    "extra",
                    format!("{key}: {e} → error: {err}"),
                    format!("oidc: error evaluating extra claim expression: expression '{e}' resulted in error: {err}"),
                );
            }
            Eval::Unsupported(why) => return r.unknown("extra", why),
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
    // User rules see the user before `system:authenticated` is added.
    let user = json!({
        "username": username,
        "uid": uid.clone().unwrap_or_default(),
        "groups": groups,
        "extra": extra,
    });
    for rule in &a.user_rules {
        let e = &rule.expression;
        match cel::eval(e, Vars::User, &user) {
            Eval::Ok(Out::Bool(true)) => r.pass("user rule", format!("{e} → true")),
            Eval::Ok(Out::Bool(false)) => {
                return r.fail(
                    "user rule",
                    format!("{e} → false"),
                    format!(
                        "oidc: error evaluating user info validation rule: validation expression '{e}' failed: {}",
                        rule.message.clone().unwrap_or_default()
                    ),
                );
            }
            Eval::Ok(other) => {
                return r.fail(
                    "user rule",
                    format!("{e} → {other:?}"),
                    format!("oidc: error evaluating user info validation rule: expression '{e}' must return a bool"),
                );
            }
            Eval::Error(err) => {
                return r.fail(
                    "user rule",
                    format!("{e} → error: {err}"),
                    format!("oidc: error evaluating user info validation rule: expression '{e}' resulted in error: {err}"),
                );
            }
            Eval::Unsupported(why) => return r.unknown("user rule", why),
        }
    }
    if a.user_rules.is_empty() {
        r.skip("user rules", "none");
    }
    let mut all_groups = groups;
    all_groups.push("system:authenticated".into());
    Outcome::Accepted(MappedUser {
        username,
        uid,
        groups: all_groups,
        extra,
    })
}
