//! Lifecycle steps on the local backend with real components (skipped loudly where they
//! are missing): a deliberately wrong expectation in a step fails, and the failure names
//! the step, the token it checked and what really happened.

use harness::run::e2e;
use harness::scenario::load_str;
use harness::skipped;
use std::path::PathBuf;

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_expectation_in_a_step_names_the_step_and_what_happened() {
    harness::init_crypto();
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!(
            "steps need {} (see `cargo xtask doctor`)",
            missing.join(", ")
        );
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("scenarios/lifecycle-removed-from-admins.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Wrong on purpose: after leaving k8s_admins, bob's fresh login may NOT delete namespaces.
    let wrong = text.replace(
        "        allowed: [\"list pods -A\"]\n        forbidden: [\"delete namespace scratch\"]",
        "        allowed: [\"list pods -A\", \"delete namespace scratch\"]",
    );
    assert_ne!(wrong, text, "the scenario changed; update this test");
    let s = load_str(&path, &wrong).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let report = e2e(harness::testsupport::e2e_options(vec![s], artifacts.path()))
        .await
        .unwrap();
    let table = harness::report::summary_table(&report.results);
    let failed: Vec<_> = report.results.iter().filter(|r| !r.passed).collect();
    assert_eq!(failed.len(), 1, "{table}");
    let f = failed[0];
    assert_eq!(
        f.check, "moved-to-users [fresh login]: allowed: delete namespace scratch",
        "{table}"
    );
    assert_eq!(f.actual, "Forbidden (403)", "{table}");
    // The kept token, side by side, still could: the lesson of the scenario.
    let kept = report
        .results
        .iter()
        .find(|r| {
            r.check == "moved-to-users [token from initial]: allowed: delete namespace scratch"
        })
        .unwrap();
    assert!(kept.passed, "{table}");
}
