//! Pure renderers: scenario + lab facts (+ Kubernetes version) → what gets applied.
//!
//! Nothing here talks to a server, so every output can be snapshot-tested and printed by
//! `cargo xtask render`.

pub mod authn_config;
pub mod kind_config;
pub mod oidc_flags;
pub mod plan;
pub mod rbac;
pub mod version;

pub use version::K8sVersion;

use crate::scenario::placeholder::Values;

/// Facts about one lab that renderers need (known after PKI and Kanidm are up).
#[derive(Debug, Clone)]
pub struct LabFacts {
    pub values: Values,
    /// PEM of the lab CA that signed Kanidm's serving certificate.
    pub ca_pem: String,
    /// Where the CA file is, as the API server sees it (for `--oidc-ca-file`).
    pub ca_path_for_apiserver: String,
}

impl LabFacts {
    /// Stand-in facts for offline rendering (`cargo xtask render`): a local-process topology.
    pub fn example(scenario: &crate::scenario::LoadedScenario) -> LabFacts {
        let k = &scenario.scenario.kanidm;
        let uuids = k
            .persons
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.name.value.clone(),
                    format!("00000000-0000-4000-8000-{:012}", i + 1),
                )
            })
            .collect();
        let values = Values::for_lab(
            "localhost",
            "https://localhost:8443",
            k.oauth2_clients.iter().map(|c| c.name.value.as_str()),
            uuids,
        );
        LabFacts {
            values,
            ca_pem: "-----BEGIN CERTIFICATE-----\n(lab CA, generated per run)\n-----END CERTIFICATE-----\n".into(),
            ca_path_for_apiserver: "<lab>/pki/ca.pem".into(),
        }
    }
}

/// A rendering problem that says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Unsupported(String),
    #[error("placeholder: {0}")]
    Placeholder(String),
    #[error("yaml: {0}")]
    Yaml(String),
}
