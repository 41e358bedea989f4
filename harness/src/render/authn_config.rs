//! `AuthenticationConfiguration` (structured authentication, post 1).

use super::{K8sVersion, LabFacts, RenderError};
use crate::scenario::LoadedScenario;
use crate::scenario::model::JwtAuthenticator;
use crate::scenario::placeholder;
use serde_json::{Map, Value, json};

/// Render the `--authentication-config` file for `version`, or `None` if the scenario uses flags.
pub fn render(
    s: &LoadedScenario,
    facts: &LabFacts,
    version: K8sVersion,
) -> Result<Option<String>, RenderError> {
    let Some(structured) = &s.scenario.api_server.value.structured else {
        return Ok(None);
    };
    let api_version = version.authn_config_api_version().ok_or_else(|| {
        RenderError::Unsupported(format!(
            "Kubernetes {version} has no AuthenticationConfiguration; scenario `{}` needs 1.30 or newer (or use legacyFlags)",
            s.name
        ))
    })?;
    let jwt: Vec<Value> = structured
        .value
        .jwt
        .iter()
        .map(|j| jwt_entry(j, facts))
        .collect::<Result<_, _>>()?;
    let doc = json!({
        "apiVersion": api_version,
        "kind": "AuthenticationConfiguration",
        "jwt": jwt,
    });
    serde_saphyr::to_string(&doc)
        .map(Some)
        .map_err(|e| RenderError::Yaml(e.to_string()))
}

/// The issuer URL an authenticator uses: the client's Kanidm issuer unless overridden.
pub fn issuer_url(j: &JwtAuthenticator, facts: &LabFacts) -> Result<String, RenderError> {
    match &j.issuer.url_override {
        Some(u) => placeholder::resolve(u, &facts.values).map_err(RenderError::Placeholder),
        None => facts
            .values
            .issuers
            .get(&j.issuer.client.value)
            .cloned()
            .ok_or_else(|| {
                RenderError::Placeholder(format!(
                    "no issuer for client `{}`",
                    j.issuer.client.value
                ))
            }),
    }
}

fn jwt_entry(j: &JwtAuthenticator, facts: &LabFacts) -> Result<Value, RenderError> {
    let mut issuer = Map::new();
    issuer.insert("url".into(), issuer_url(j, facts)?.into());
    let audiences = j
        .issuer
        .audiences
        .clone()
        .unwrap_or_else(|| vec![j.issuer.client.value.clone()]);
    issuer.insert("audiences".into(), resolved(json!(audiences), facts)?);
    if let Some(p) = &j.issuer.audience_match_policy {
        issuer.insert("audienceMatchPolicy".into(), p.clone().into());
    }
    if !j.issuer.omit_certificate_authority {
        issuer.insert("certificateAuthority".into(), facts.ca_pem.clone().into());
    }
    let mut mappings = Map::new();
    mappings.insert("username".into(), to_value(&j.claim_mappings.username)?);
    if let Some(g) = &j.claim_mappings.groups {
        mappings.insert("groups".into(), to_value(g)?);
    }
    if let Some(u) = &j.claim_mappings.uid {
        mappings.insert("uid".into(), to_value(u)?);
    }
    if !j.claim_mappings.extra.is_empty() {
        mappings.insert("extra".into(), to_value(&j.claim_mappings.extra)?);
    }
    let mut entry = Map::new();
    entry.insert("issuer".into(), Value::Object(issuer));
    if !j.claim_validation_rules.is_empty() {
        entry.insert(
            "claimValidationRules".into(),
            resolved(to_value(&j.claim_validation_rules)?, facts)?,
        );
    }
    entry.insert(
        "claimMappings".into(),
        resolved(Value::Object(mappings), facts)?,
    );
    if !j.user_validation_rules.is_empty() {
        entry.insert(
            "userValidationRules".into(),
            resolved(to_value(&j.user_validation_rules)?, facts)?,
        );
    }
    Ok(Value::Object(entry))
}

/// Every string in `v` with its `${…}` placeholders resolved: claim names, prefixes, CEL
/// expressions, rule values and messages all may carry them (the loader checked them).
fn resolved(mut v: Value, facts: &LabFacts) -> Result<Value, RenderError> {
    fn walk(v: &mut Value, facts: &LabFacts) -> Result<(), RenderError> {
        match v {
            Value::String(s) => {
                *s = placeholder::resolve(s, &facts.values).map_err(RenderError::Placeholder)?;
            }
            Value::Array(a) => a.iter_mut().try_for_each(|x| walk(x, facts))?,
            Value::Object(o) => o.values_mut().try_for_each(|x| walk(x, facts))?,
            _ => {}
        }
        Ok(())
    }
    walk(&mut v, facts)?;
    Ok(v)
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, RenderError> {
    serde_json::to_value(v).map_err(|e| RenderError::Yaml(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_cel_and_rule_values_reach_the_api_server_resolved() {
        let base = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scenarios/post1-structured.yaml"),
        )
        .unwrap();
        let text = base.replacen(
            "        claimMappings:",
            "        claimValidationRules:\n          - expression: \"'k8s_users@${domain}' in claims.groups\"\n            message: \"not in k8s_users@${domain}\"\n        claimMappings:",
            1,
        );
        assert_ne!(text, base, "the scenario layout changed; adjust the test");
        let s = crate::scenario::load_str(std::path::Path::new("cel.yaml"), &text).unwrap();
        let facts = LabFacts::example(&s);
        let out = render(&s, &facts, "1.36".parse().unwrap())
            .unwrap()
            .unwrap();
        assert!(
            out.contains("'k8s_users@localhost' in claims.groups"),
            "{out}"
        );
        assert!(out.contains("not in k8s_users@localhost"), "{out}");
        assert!(!out.contains("${"), "{out}");
    }
}
