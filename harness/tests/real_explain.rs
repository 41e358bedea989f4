//! The differential test of `explain`: every shipped scenario runs against the real
//! kube-apiserver and Kanidm with `explain_check`, so each token the API server answers is
//! also given to `explain` with the config the API server runs, and the two must agree
//! (verdict, cause, username/uid/groups/extra). Skipped loudly without real components.

use harness::run::{E2eOptions, e2e};
use harness::skipped;
use std::collections::BTreeSet;
use std::path::PathBuf;

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn explain_agrees_with_the_api_server_on_every_shipped_scenario() {
    harness::init_crypto();
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = harness::scenario::discover(&root.join("scenarios")).unwrap();
    let scenarios: Vec<_> = files
        .iter()
        .map(|f| harness::scenario::load_file(f).unwrap())
        .collect();
    let names: BTreeSet<String> = scenarios.iter().map(|s| s.name.clone()).collect();
    let artifacts = tempfile::tempdir().unwrap();
    let report = e2e(E2eOptions {
        order_for_speed: true,
        explain_check: true,
        ..harness::testsupport::e2e_options(scenarios, artifacts.path())
    })
    .await
    .unwrap();
    let table = harness::report::summary_table(&report.results);
    assert_eq!(report.failed(), 0, "{table}");
    let agrees: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.check.ends_with("explain agrees"))
        .collect();
    // Every scenario in which someone got a token was cross-checked.
    let with_token: BTreeSet<&str> = report
        .results
        .iter()
        .filter(|r| r.actual.starts_with("token ("))
        .map(|r| r.scenario.as_str())
        .collect();
    let checked: BTreeSet<&str> = agrees.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(with_token, checked, "{table}");
    assert!(checked.len() + 1 >= names.len(), "{checked:?} of {names:?}");
    // Every cause a shipped scenario expects was produced by explain and matched.
    for cause in [
        "unsupported-signing-alg",
        "audience",
        "issuer",
        "untrusted-ca",
        "claim-rule",
        "user-rule",
        "signature",
        "authenticator-not-initialized",
    ] {
        assert!(
            agrees
                .iter()
                .any(|r| r.actual == format!("both: Unauthorized (401), cause {cause}")),
            "no agreed 401 for {cause}:\n{table}"
        );
    }
    // And accepted tokens: the same user as `kubectl auth whoami`.
    assert!(
        agrees
            .iter()
            .filter(|r| r.actual.starts_with("both: accepted as"))
            .count()
            >= 20,
        "{table}"
    );
}
