//! Real kubelogin (int128/kubelogin) in the loop, on the local backend: post 1's exec block
//! as written, post 2's `oidc-login setup` flow, and refresh against Kanidm (silent, twice,
//! two at once, after a group change, after session revocation, after expiry). Skipped
//! loudly without kubelogin or the other real components.

use harness::run::e2e;
use harness::scenario::load_file;
use harness::skipped;
use std::path::PathBuf;

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn kubelogin_logs_in_and_refreshes_against_kanidm() {
    harness::init_crypto();
    let mut missing = harness::tools::missing_for_local();
    if harness::tools::KUBELOGIN.find().is_none() {
        missing.push("kubelogin (KUBELOGIN_BIN)");
    }
    if !missing.is_empty() {
        skipped!("kubelogin scenarios need {}", missing.join(", "));
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenarios = [
        "kubelogin-post1",
        "kubelogin-post2-setup",
        "kubelogin-refresh",
        "kubelogin-refresh-group-removed",
        "kubelogin-refresh-revoked",
        "kubelogin-refresh-expired",
    ]
    .iter()
    .map(|n| load_file(&root.join(format!("scenarios/{n}.yaml"))).unwrap())
    .collect();
    let artifacts = tempfile::tempdir().unwrap();
    let report = e2e(harness::testsupport::e2e_options(
        scenarios,
        artifacts.path(),
    ))
    .await
    .unwrap();
    let table = harness::report::summary_table(&report.results);
    assert_eq!(report.failed(), 0, "{table}");
    let find =
        |scenario: &str, check: &str| harness::testsupport::find_check(&report, scenario, check);
    // What kubelogin sent Kanidm: post 1's one scope string with spaces, plus its own openid.
    let login = &find("kubelogin-post1", "login").actual;
    assert!(
        login
            .contains("scope=`openid profile groups email openid`, PKCE S256, access_type=offline"),
        "{login}"
    );
    assert!(login.contains("id_token+refresh_token"), "{login}");
    // Post 2's setup flow asks for openid alone, and its exec block is what setup printed.
    let setup = &find("kubelogin-post2-setup", "login").actual;
    assert!(
        setup.contains("scope=`openid`") && setup.contains("oidc-login setup"),
        "{setup}"
    );
    // Refreshes: silent, and two at once on one cache each with its own token.
    assert!(
        find(
            "kubelogin-refresh",
            "two-at-once [kubelogin refresh]: refresh"
        )
        .actual
        .starts_with("silent: 2 new id_tokens without the browser (2 at once"),
        "{table}"
    );
    // Expiry: the refresh is refused and Kanidm refuses the browser login too.
    assert!(
        find(
            "kubelogin-refresh-expired",
            "account-expired [kubelogin refresh]: refresh"
        )
        .actual
        .starts_with("refused"),
        "{table}"
    );
    assert!(
        report
            .versions
            .get("kubelogin")
            .is_some_and(|v| v.starts_with('v')),
        "{:?}",
        report.versions
    );
}
