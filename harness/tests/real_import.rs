//! The posts' own commands and files, imported with `scenarios import` and run on real
//! components: post 1's import passes as post1-structured does (alice: view, not more);
//! post 2's import reproduces the post's 401 — ES256 against the flags' RS256 default, with
//! the API server's own log line.

use harness::import::import;
use harness::run::e2e;
use harness::scenario::load_str;
use harness::skipped;
use std::path::Path;

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn the_posts_imported_reproduce_the_posts() {
    harness::init_crypto();
    let mut missing = harness::tools::missing_for_local();
    if harness::tools::KUBELOGIN.find().is_none() {
        missing.push("kubelogin (KUBELOGIN_BIN)");
    }
    if !missing.is_empty() {
        skipped!(
            "importing and running the posts needs {}",
            missing.join(", ")
        );
        return;
    }
    let post1 = import(&harness::testsupport::post_import_inputs(1, true)).unwrap();
    let post2 = import(&harness::testsupport::post_import_inputs(2, true)).unwrap();
    let scenarios = vec![
        load_str(Path::new("post1-imported.yaml"), &post1).unwrap(),
        load_str(Path::new("post2-imported.yaml"), &post2).unwrap(),
    ];
    let artifacts = tempfile::tempdir().unwrap();
    let report = e2e(harness::testsupport::e2e_options(
        scenarios,
        artifacts.path(),
    ))
    .await
    .unwrap();
    let table = harness::report::summary_table(&report.results);
    let failed: Vec<_> = report.results.iter().filter(|r| !r.passed).collect();
    // Post 1 as imported holds: every check of it passes.
    assert!(
        failed.iter().all(|r| r.scenario == "post2-imported"),
        "{table}"
    );
    let find =
        |scenario: &str, check: &str| harness::testsupport::find_check(&report, scenario, check);
    assert_eq!(
        find("post1-imported", "forbidden: delete namespace scratch").actual,
        "Forbidden (403)"
    );
    // Post 2 as imported: datosh logs in (kubelogin, openid only) and gets the post's 401.
    assert!(find("post2-imported", "login").passed, "{table}");
    let w = find("post2-imported", "whoami");
    assert!(!w.passed && w.actual == "Unauthorized (401)", "{table}");
    assert!(
        w.apiserver_line
            .as_deref()
            .unwrap_or("")
            .contains(r#"expected ["RS256"] got "ES256""#),
        "{table}"
    );
    assert!(
        w.detail
            .as_deref()
            .unwrap_or("")
            .contains("cause unsupported-signing-alg"),
        "{table}"
    );
}
