//! The legacy `--oidc-*` flag set (post 2).

use super::{LabFacts, RenderError};
use crate::scenario::LoadedScenario;
use crate::scenario::placeholder;

/// Render `--oidc-*` flags, or `None` if the scenario uses structured configuration.
pub fn render(s: &LoadedScenario, facts: &LabFacts) -> Result<Option<Vec<String>>, RenderError> {
    let Some(flags) = &s.scenario.api_server.value.legacy_flags else {
        return Ok(None);
    };
    let f = &flags.value;
    let issuer = facts.values.issuers.get(&f.client.value).ok_or_else(|| {
        RenderError::Placeholder(format!("no issuer for client `{}`", f.client.value))
    })?;
    let mut out = vec![
        format!("--oidc-issuer-url={issuer}"),
        format!(
            "--oidc-client-id={}",
            f.client_id
                .clone()
                .unwrap_or_else(|| f.client.value.clone())
        ),
    ];
    if !f.omit_ca_file {
        out.push(format!("--oidc-ca-file={}", facts.ca_path_for_apiserver));
    }
    let optional = [
        ("--oidc-username-claim", &f.username_claim),
        ("--oidc-username-prefix", &f.username_prefix),
        ("--oidc-groups-claim", &f.groups_claim),
        ("--oidc-groups-prefix", &f.groups_prefix),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            out.push(format!("{flag}={v}"));
        }
    }
    if !f.signing_algs.is_empty() {
        let algs: Vec<&str> = f.signing_algs.iter().map(|a| a.value.as_str()).collect();
        out.push(format!("--oidc-signing-algs={}", algs.join(",")));
    }
    for rc in &f.required_claims {
        out.push(format!("--oidc-required-claim={rc}"));
    }
    // Values may carry placeholders (a prefix `${issuer:k8s}#`, a required claim value).
    out.into_iter()
        .map(|f| placeholder::resolve(&f, &facts.values).map_err(RenderError::Placeholder))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
