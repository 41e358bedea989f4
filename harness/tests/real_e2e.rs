//! The main job end to end on the local backend, when every real component is found
//! (skipped loudly otherwise): both posts, each expectation passing for the right reason.

use harness::run::{E2eOptions, e2e};
use harness::scenario::load_file;
use std::path::PathBuf;

use harness::skipped;

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn both_posts_end_to_end() {
    harness::init_crypto();
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!(
            "e2e needs {} (see `cargo xtask doctor`)",
            missing.join(", ")
        );
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenarios = [
        "post1-structured",
        "post2-as-written",
        "post2-fix-signing-algs",
        "post2-fix-legacy-crypto",
    ]
    .iter()
    .map(|n| load_file(&root.join(format!("scenarios/{n}.yaml"))).unwrap())
    .collect();
    let artifacts = tempfile::tempdir().unwrap();
    let report = e2e(E2eOptions {
        order_for_speed: true,
        ..harness::testsupport::e2e_options(scenarios, artifacts.path())
    })
    .await
    .unwrap();
    let table = harness::report::summary_table(&report.results);
    assert_eq!(report.failed(), 0, "{table}");
    let find =
        |scenario: &str, check: &str| harness::testsupport::find_check(&report, scenario, check);
    // Post 2 as written: 401, and the API server's own line names ES256.
    let r = find("post2-as-written", "unauthorized: unsupported-signing-alg");
    assert!(
        r.apiserver_line
            .as_deref()
            .unwrap_or("")
            .contains(r#"expected ["RS256"] got "ES256""#),
        "{table}"
    );
    // Post 1's view/admin split.
    assert_eq!(
        find("post1-structured", "forbidden: delete namespace scratch").actual,
        "Forbidden (403)"
    );
    assert_eq!(
        find("post1-structured", "allowed: delete namespace scratch").person,
        "bob"
    );
    // Both fixes: RS256 token with legacy crypto, ES256 accepted with the flag.
    assert_eq!(
        find("post2-fix-legacy-crypto", "login").actual,
        "token (RS256)"
    );
    assert_eq!(
        find("post2-fix-signing-algs", "login").actual,
        "token (ES256)"
    );
    assert!(artifacts.path().join("junit.xml").exists());
}
