//! The user's API-server authentication (validated by `explain` as the API server would),
//! as the scenario's `apiServer:` section: their issuer becomes the lab's client, their CA
//! the lab's CA, and their names the lab's placeholders. Pure.

use super::rewrite::{Log, Origin, kanidm_issuer};
use crate::explain::config::{Authenticator, ClaimRule, Mapping};
use serde_json::{Value, json};

/// Replace the user's issuer URL and domain inside a string (a prefix, a CEL expression, a
/// required value) with the lab's placeholders.
fn rewrite_text(s: &str, origin: &Origin, log: &mut Log) -> String {
    let mut out = s.to_string();
    if let (Some(iss), Some(c)) = (&origin.issuer, &origin.client) {
        let bare = iss.trim_end_matches('/');
        if out.contains(bare) {
            out = out.replace(bare, &format!("${{issuer:{c}}}"));
            log.note(format!("issuer `{bare}` → `${{issuer:{c}}}`"));
        }
    }
    if let Some(d) = &origin.domain {
        let at = format!("@{d}");
        if out.contains(&at) {
            out = out.replace(&at, "@${domain}");
            log.note(format!(
                "domain `{d}` → `${{domain}}` (in group and user names)"
            ));
        }
    }
    out
}

fn mapping(m: &Mapping, origin: &Origin, log: &mut Log, with_prefix: bool) -> Value {
    match m {
        Mapping::Claim { claim, prefix } if with_prefix => {
            json!({"claim": claim, "prefix": rewrite_text(prefix, origin, log)})
        }
        Mapping::Claim { claim, .. } => json!({ "claim": claim }),
        Mapping::Expression(e) => json!({"expression": rewrite_text(e, origin, log)}),
    }
}

/// The authenticators' `apiServer:` section, and what could not be imported.
pub fn section(
    auths: &[Authenticator],
    origin: &Origin,
    log: &mut Log,
    not_imported: &mut Vec<String>,
) -> Result<Value, String> {
    let mut kanidm: Vec<&Authenticator> = Vec::new();
    for a in auths {
        match kanidm_issuer(&a.issuer_url) {
            Some(_) => kanidm.push(a),
            None => not_imported.push(format!(
                "{} with issuer `{}`: not a Kanidm issuer (<origin>/oauth2/openid/<client>); the lab runs Kanidm only",
                a.label, a.issuer_url
            )),
        }
    }
    if kanidm.is_empty() {
        return Err(
            "no authenticator trusts a Kanidm issuer (https://<host>/oauth2/openid/<client>)"
                .into(),
        );
    }
    let ca_note = |a: &Authenticator| match &a.ca_pem {
        Some(_) => format!(
            "{}: the CA it names ({}) → the lab's CA",
            a.label, a.ca_origin
        ),
        None => format!(
            "{}: no CA (the system's public CAs) → the lab's CA",
            a.label
        ),
    };
    if kanidm[0].legacy_flags {
        let a = kanidm[0];
        let (client, _) = kanidm_issuer(&a.issuer_url).unwrap_or_default();
        log.note(ca_note(a));
        let mut f = json!({"client": client});
        if a.audiences.first().map(String::as_str) != Some(client.as_str()) {
            f["clientId"] = json!(a.audiences.first().cloned().unwrap_or_default());
        }
        if let Mapping::Claim { claim, prefix } = &a.username {
            if claim != "sub" {
                f["usernameClaim"] = json!(claim);
            }
            let default = if claim == "email" {
                String::new()
            } else {
                format!("{}#", a.issuer_url)
            };
            if *prefix != default {
                f["usernamePrefix"] = json!(if prefix.is_empty() {
                    "-".to_string()
                } else {
                    rewrite_text(prefix, origin, log)
                });
            }
        }
        if let Some(Mapping::Claim { claim, prefix }) = &a.groups {
            f["groupsClaim"] = json!(claim);
            if !prefix.is_empty() {
                f["groupsPrefix"] = json!(rewrite_text(prefix, origin, log));
            }
        }
        if a.signing_algs != ["RS256"] {
            f["signingAlgs"] = json!(a.signing_algs);
        }
        let required: Vec<String> = a
            .claim_rules
            .iter()
            .filter_map(|r| match r {
                ClaimRule::Required { claim, value } => {
                    Some(format!("{claim}={}", rewrite_text(value, origin, log)))
                }
                ClaimRule::Expression { .. } => None,
            })
            .collect();
        if !required.is_empty() {
            f["requiredClaims"] = json!(required);
        }
        return Ok(json!({ "legacyFlags": f }));
    }
    let mut jwt = Vec::new();
    for a in kanidm {
        let (client, _) = kanidm_issuer(&a.issuer_url).unwrap_or_default();
        log.note(ca_note(a));
        if let Some(d) = &a.discovery_url {
            not_imported.push(format!(
                "{}: discoveryURL `{d}` (the lab's Kanidm serves discovery at its issuer)",
                a.label
            ));
        }
        if let Some(e) = &a.egress_selector {
            not_imported.push(format!("{}: egressSelectorType `{e}`", a.label));
        }
        let mut issuer = json!({"client": client});
        if a.audiences != [client.clone()] {
            issuer["audiences"] = json!(a.audiences);
        }
        if let Some(p) = &a.audience_match_policy {
            issuer["audienceMatchPolicy"] = json!(p);
        }
        let mut cm = json!({"username": mapping(&a.username, origin, log, true)});
        if let Some(g) = &a.groups {
            cm["groups"] = mapping(g, origin, log, true);
        }
        if let Some(u) = &a.uid {
            cm["uid"] = mapping(u, origin, log, false);
        }
        if !a.extra.is_empty() {
            cm["extra"] = json!(
                a.extra
                    .iter()
                    .map(
                        |(k, v)| json!({"key": k, "valueExpression": rewrite_text(v, origin, log)})
                    )
                    .collect::<Vec<_>>()
            );
        }
        let mut j = json!({"issuer": issuer, "claimMappings": cm});
        let rules: Vec<Value> = a
            .claim_rules
            .iter()
            .map(|r| match r {
                ClaimRule::Required { claim, value } => {
                    json!({"claim": claim, "requiredValue": rewrite_text(value, origin, log)})
                }
                ClaimRule::Expression {
                    expression,
                    message,
                } => {
                    let mut v = json!({"expression": rewrite_text(expression, origin, log)});
                    if let Some(m) = message {
                        v["message"] = json!(m);
                    }
                    v
                }
            })
            .collect();
        if !rules.is_empty() {
            j["claimValidationRules"] = json!(rules);
        }
        let urules: Vec<Value> = a
            .user_rules
            .iter()
            .map(|r| {
                let mut v = json!({"expression": rewrite_text(&r.expression, origin, log)});
                if let Some(m) = &r.message {
                    v["message"] = json!(m);
                }
                v
            })
            .collect();
        if !urules.is_empty() {
            j["userValidationRules"] = json!(urules);
        }
        jwt.push(j);
    }
    Ok(json!({"structured": {"jwt": jwt}}))
}
