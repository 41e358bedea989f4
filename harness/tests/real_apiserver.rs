//! Against a real kube-apiserver + etcd (+ kube-controller-manager), skipped loudly when
//! not found: every rendered AuthenticationConfiguration and flag set passes the API
//! server's own validation, and a config it must reject is rejected with its message.

use harness::cluster::local::LocalControlPlane;
use harness::cluster::{AuthSetup, ClusterBackend};
use harness::render::LabFacts;
use harness::scenario::{discover, load_file};
use std::path::PathBuf;

/// Say loudly that a test did not run (written straight to stderr, past libtest's capture).
use harness::skipped;

fn available() -> bool {
    let missing: Vec<&str> = harness::tools::missing_for_local()
        .into_iter()
        .filter(|t| ["kube-apiserver", "kube-controller-manager", "etcd"].contains(t))
        .collect();
    if !missing.is_empty() {
        skipped!(
            "{} not found (see `cargo xtask doctor`)",
            missing.join(", ")
        );
    }
    missing.is_empty()
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn api_server_accepts_every_rendered_auth_config() {
    harness::init_crypto();
    if !available() {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let pki = harness::pki::generate(
        &dir.path().join("pki"),
        &harness::pki::ServingNames::loopback(&["localhost"]),
        &harness::pki::ServingNames::loopback(&["localhost"]),
    )
    .unwrap();
    // Every minor found here, each against its own API server.
    let places = harness::tools::Places::from_env();
    for (minor, _, _) in harness::tools::local_minors(&places).await {
        every_rendered_config_on(&places, minor, &root, &dir, &pki).await;
    }
}

async fn every_rendered_config_on(
    places: &harness::tools::Places,
    minor: u32,
    root: &std::path::Path,
    dir: &tempfile::TempDir,
    pki: &harness::pki::LabPki,
) {
    let bins = harness::tools::control_plane_for(places, minor)
        .await
        .unwrap();
    let v: harness::render::K8sVersion = format!("1.{minor}").parse().unwrap();
    let dir = dir.path().join(format!("k8s-{v}"));
    let mut cp = LocalControlPlane::start(&dir.join("cluster"), pki, &bins)
        .await
        .unwrap();
    let mut seen = 0;
    for path in discover(&root.join("scenarios")).unwrap() {
        let s = load_file(&path).unwrap();
        let mut facts = LabFacts::example(&s);
        facts.ca_pem = pki.ca_pem.clone();
        facts.ca_path_for_apiserver = pki.ca_cert.to_string_lossy().into_owned();
        let auth = harness::render::plan::auth_setup(&s, &facts, v).unwrap();
        cp.configure_auth(&auth).await.unwrap_or_else(|e| {
            panic!(
                "{}: the {} API server rejected the rendered config: {e:#}",
                s.name, bins.version
            )
        });
        seen += 1;
    }
    assert!(seen >= 10);
    // A config the API server must refuse: claims.email without claims.email_verified.
    let bad = format!(
        "apiVersion: {}\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: https://localhost:8443/oauth2/openid/k8s\n    audiences: [k8s]\n  claimMappings:\n    username:\n      expression: claims.email\n",
        v.authn_config_api_version().unwrap()
    );
    let err = cp
        .configure_auth(&AuthSetup::Structured { config_yaml: bad })
        .await
        .expect_err("must be rejected");
    let text = format!("{err:#}");
    assert!(text.contains("email_verified"), "{text}");
    eprintln!(
        "{}: api server start → /readyz: {:?}",
        bins.version, cp.ready_times
    );
    cp.shutdown().await;
}
