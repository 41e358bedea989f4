//! The conformance run on every kube-apiserver found locally: the real binary judges each
//! configuration and CEL expression of the corpus, explain's validator must say the same on
//! every one. (`cargo xtask conformance` is the same run for a user's own binary.)

use harness::conformance::{self, Target};
use harness::skipped;

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn explain_validates_as_every_local_kube_apiserver_does() {
    harness::init_crypto();
    let places = harness::tools::Places::from_env();
    let minors = harness::tools::local_minors(&places).await;
    if minors.is_empty() {
        skipped!("no kube-apiserver found (KUBEBUILDER_ASSETS, the setup cache, PATH)");
        return;
    }
    for (minor, version, _) in minors {
        let bins = harness::tools::control_plane_for(&places, minor)
            .await
            .unwrap();
        let target = Target {
            binary: bins.apiserver,
            version: version.clone(),
            minor,
        };
        let report = conformance::run(&target, None, 2, |_, _| {}).await.unwrap();
        let rendered = conformance::render(&report, false);
        let configs = report.results.len();
        let cel = report
            .results
            .iter()
            .filter(|r| matches!(r.case.kind, conformance::corpus::CaseKind::Cel { .. }))
            .count();
        assert!(
            configs >= 300 && cel >= 250,
            "{version}: corpus too small\n{rendered}"
        );
        // Both verdicts occur: the oracle is not stuck on one answer.
        let accepted = report
            .results
            .iter()
            .filter(|r| r.apiserver == conformance::verdict::Verdict::Accepted)
            .count();
        assert!(
            accepted > 100 && accepted < configs - 100,
            "{version}: {accepted} accepted\n{rendered}"
        );
        assert!(
            report
                .results
                .iter()
                .all(|r| !matches!(r.apiserver, conformance::verdict::Verdict::Unknown(_))),
            "{version}: runs without a verdict\n{rendered}"
        );
        assert_eq!(report.disagreements().count(), 0, "{version}\n{rendered}");
        eprintln!("{}", rendered.trim_end());
    }
}

/// The token oracle: 294 mutations of a Kanidm id_token (dates at and past the int64 limits
/// and of every JSON type, audience and issuer forms, headers, signatures, the claims the
/// mappings read) against a running kube-apiserver of every local minor, judged as
/// `e2e --explain-check` judges.
#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn explain_judges_every_mutated_token_as_the_api_server_does() {
    harness::init_crypto();
    let missing = harness::tools::missing_for_local();
    if missing
        .iter()
        .any(|m| m.contains("etcd") || m.contains("kube"))
    {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let places = harness::tools::Places::from_env();
    for (minor, version, _) in harness::tools::local_minors(&places).await {
        let bins = harness::tools::control_plane_for(&places, minor)
            .await
            .unwrap();
        let target = Target {
            binary: bins.apiserver.clone(),
            version: version.clone(),
            minor,
        };
        let report = conformance::token_run::run(&target, &bins, |_, _| {})
            .await
            .unwrap();
        let rendered = conformance::token_run::render(&report, false);
        assert!(report.results.len() >= 200, "{rendered}");
        let accepted = report
            .results
            .iter()
            .filter(|r| !r.apiserver.starts_with("Unauthorized"))
            .count();
        assert!(
            accepted >= 50 && report.results.len() - accepted >= 50,
            "{version}: both answers occur\n{rendered}"
        );
        assert!(
            report.results.iter().all(|r| r.judgement.passed),
            "{version}\n{rendered}"
        );
    }
}
