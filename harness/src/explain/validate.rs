//! A scenario's API-server authentication through explain's validator: the configuration a
//! run would give kube-apiserver is rendered and validated as that minor's API server
//! validates it at start (strict decoding, field rules, CEL compiled in the API server's
//! environment). A configuration it would refuse is a located scenario error when the file
//! loads, so `scenarios check`, `render` and `e2e` refuse what the API server refuses.

use super::config;
use crate::render::{K8sVersion, LabFacts, authn_config};
use crate::scenario::LoadedScenario;
use crate::scenario::error::{ScenarioError, ScenarioErrors};

/// Load a scenario file and validate its authentication for `minors`: what `scenarios check`,
/// `render` and `e2e` load.
pub fn load_file(
    path: &std::path::Path,
    minors: &[K8sVersion],
) -> Result<LoadedScenario, ScenarioErrors> {
    let s = crate::scenario::load_file(path)?;
    scenario(&s, minors)?;
    Ok(s)
}

/// Every structured authentication of `s` (the scenario's, then each step's) for each of
/// `minors`.
pub fn scenario(s: &LoadedScenario, minors: &[K8sVersion]) -> Result<(), ScenarioErrors> {
    let mut facts = LabFacts::example(s);
    // The example CA is a placeholder; the API server checks the PEM, so give it a real one.
    if let Ok(ca) = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]) {
        facts.ca_pem = ca.cert.pem();
    }
    let mut sources = vec![("apiServer".to_string(), s.scenario.api_server.clone())];
    for (i, step) in s.scenario.steps.iter().enumerate() {
        if let Some(api) = &step.api_server {
            sources.push((format!("steps[{i}].apiServer"), api.clone()));
        }
    }
    let mut errors = Vec::new();
    for (field, api) in sources {
        let Some(structured) = &api.value.structured else {
            continue;
        };
        let mut one = s.clone();
        one.scenario.api_server = api.clone();
        // The same refusal on several minors is said once, naming them all.
        let mut refusals: Vec<(String, Vec<K8sVersion>)> = Vec::new();
        for &v in minors {
            let Ok(Some(yaml)) = authn_config::render(&one, &facts, v) else {
                continue;
            };
            if let Err(e) = config::from_config(&yaml, "the rendered configuration", v) {
                let detail = refusal_detail(&e.0);
                match refusals.iter_mut().find(|(d, _)| *d == detail) {
                    Some((_, vs)) => vs.push(v),
                    None => refusals.push((detail, vec![v])),
                }
            }
        }
        for (detail, vs) in refusals {
            let shown: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
            errors.push(
                ScenarioError::at(
                    &s.path,
                    structured.referenced,
                    format!("{field}.structured"),
                    format!(
                        "kube-apiserver {} would refuse to start with this configuration:\n    {}",
                        shown.join(", "),
                        detail.replace('\n', "\n    ")
                    ),
                )
                .help(help_for(&detail)),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ScenarioErrors(errors))
    }
}

/// The API server's own lines, without our "would refuse" preamble.
fn refusal_detail(message: &str) -> String {
    match message.split_once(":\n") {
        Some((_, rest)) => rest.lines().map(str::trim).collect::<Vec<_>>().join("\n"),
        None => message.to_string(),
    }
}

fn help_for(detail: &str) -> String {
    if detail.contains("cannot be range of a comprehension") {
        "a claim read from `claims` has type `any`, which a macro cannot iterate: write `dyn(claims.groups).map(…)` instead of `claims.groups.map(…)`".into()
    } else if detail.contains("must evaluate to bool") {
        "a validation rule must have the static type bool: compare explicitly, e.g. `claims.email_verified == true`".into()
    } else if detail.contains("undeclared reference") {
        "claim rules and mappings see only `claims`, userValidationRules only `user`; a function the API server's CEL lacks is undeclared too".into()
    } else {
        "the lines above are the API server's own field errors; write what they ask for".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Post 1's scenario with its groups mapping replaced.
    fn load(groups: &str) -> LoadedScenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/post1-structured.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "groups: {claim: groups, prefix: \"\"}",
            &format!("groups: {{expression: \"{groups}\"}}"),
        );
        assert!(text.contains(groups));
        crate::scenario::load_str(&path, &text).unwrap()
    }

    #[test]
    fn a_config_the_api_server_refuses_is_a_located_error() {
        let s = load("claims.groups.filter(g, g.startsWith('k8s_'))");
        let e = scenario(&s, &[K8sVersion { minor: 33 }, K8sVersion::DEFAULT]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        let m = &e.0[0];
        assert!(m.line > 0, "{m:?}");
        assert_eq!(m.field, "apiServer.structured");
        assert!(
            m.message.contains("kube-apiserver 1.33, 1.36 would refuse"),
            "{}",
            m.message
        );
        assert!(
            m.message
                .contains("jwt[0].claimMappings.groups.expression: Invalid value"),
            "{}",
            m.message
        );
        assert!(
            m.help
                .as_deref()
                .unwrap_or_default()
                .contains("dyn(claims.groups)")
        );
        let ok = load("dyn(claims.groups).filter(g, g.startsWith('k8s_'))");
        scenario(&ok, &[K8sVersion::DEFAULT]).unwrap();
    }
}
