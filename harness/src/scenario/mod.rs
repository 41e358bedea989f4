//! Scenario files: schema, strict loading, placeholders and actions.

pub mod action;
pub mod cause;
pub mod error;
pub mod kubelogin;
pub mod load;
pub mod model;
pub mod placeholder;
pub mod steps;

pub use error::{ScenarioError, ScenarioErrors};
pub use load::{LoadedScenario, load_file, load_str};

use std::path::{Path, PathBuf};

/// All `*.yaml` files in a directory, sorted by name.
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    out.sort();
    Ok(out)
}

/// Scenarios in the order that restarts the API server least on kind, where a restart costs
/// 14–18 s and a structured reload ~10 s (both measured): structured configs first, then
/// structured configs whose expectations say the authenticator never initialises (they are
/// restarts anyway, and the scenario after them would otherwise pay a reload), then
/// `--oidc-*` flags. Stable within each group. Only the order changes: what each scenario
/// runs against is still decided and verified per scenario.
pub fn order_for_fewest_switches(scenarios: &mut [LoadedScenario]) {
    scenarios.sort_by_key(switch_class);
}

/// 0: a structured config, 1: a structured config whose expectations say it never
/// initialises, 2: `--oidc-*` flags (see [`order_for_fewest_switches`]).
pub fn switch_class(s: &LoadedScenario) -> u8 {
    use crate::scenario::cause::Cause;
    let never_initialises = s.scenario.expect.iter().any(|e| {
        e.unauthorized.as_ref().is_some_and(|u| {
            matches!(
                u.cause.value,
                Cause::UntrustedCa | Cause::AuthenticatorNotInitialized | Cause::Issuer
            )
        })
    });
    match (
        s.scenario.api_server.value.legacy_flags.is_some(),
        never_initialises,
    ) {
        (false, false) => 0,
        (false, true) => 1,
        (true, _) => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_scenarios_go_first_in_their_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut all: Vec<LoadedScenario> = discover(&dir)
            .unwrap()
            .iter()
            .map(|p| load_file(p).unwrap())
            .collect();
        let before: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
        order_for_fewest_switches(&mut all);
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        // The two configs that never initialise sit between the healthy structured ones and the flags.
        assert!(at("wrong-audience") < at("issuer-trailing-slash"));
        assert!(at("issuer-trailing-slash") < at("untrusted-ca"));
        assert!(at("untrusted-ca") < at("post2-as-written"));
        let flags: Vec<bool> = all
            .iter()
            .map(|s| s.scenario.api_server.value.legacy_flags.is_some())
            .collect();
        let first_flags = flags.iter().position(|f| *f).unwrap();
        assert!(flags[first_flags..].iter().all(|f| *f), "{flags:?}");
        assert!(first_flags > 0);
        // Stable: the flag group keeps the discovery order.
        let pos = |n: &str| before.iter().position(|b| b == n).unwrap();
        for w in all[first_flags..].windows(2) {
            assert!(pos(&w[0].name) < pos(&w[1].name));
        }
    }
}
