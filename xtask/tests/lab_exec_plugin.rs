//! `lab up`'s kubeconfigs log people in through `cargo xtask exec-credential` (the exec
//! credential plugin) with real kubectl, kanidmd, kube-apiserver and Chromium; skipped loudly
//! when any of them is missing.

use std::path::PathBuf;

use harness::skipped;

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_in_through_the_exec_plugin() {
    harness::init_crypto();
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let s = harness::scenario::load_file(&root.join("scenarios/post1-structured.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lab_dir = dir.path().join("lab");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
    let running = harness::testsupport::local_lab_with(&s, &lab_dir, &exe, false)
        .await
        .unwrap();
    let kubeconfig = running.state.persons["alice"].kubeconfig.clone().unwrap();
    let kubectl = harness::tools::KUBECTL.require().unwrap();
    let whoami = |kc: PathBuf| {
        let kubectl = kubectl.clone();
        async move {
            tokio::process::Command::new(&kubectl)
                .arg(format!("--kubeconfig={}", kc.display()))
                .args(["auth", "whoami", "-o", "json"])
                .output()
                .await
                .unwrap()
        }
    };
    // First call: no cached token, so the plugin logs in through the browser.
    let out = whoami(kubeconfig.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "alice@localhost");
    // Second call: the cached token is used (no login), so it is fast.
    let t = std::time::Instant::now();
    let again = whoami(kubeconfig).await;
    assert!(again.status.success());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "cached token not used: {:?}",
        t.elapsed()
    );
    // The plugin prints a v1 ExecCredential with an expiry.
    let cred = harness::labkit::exec_credential(&lab_dir, "alice")
        .await
        .unwrap();
    let c: serde_json::Value = serde_json::from_str(&cred).unwrap();
    assert_eq!(c["apiVersion"], "client.authentication.k8s.io/v1");
    assert!(
        c["status"]["expirationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    running.shutdown().await;
    assert!(!lab_dir.exists(), "lab secrets must go with the lab");
}

/// With kubelogin found, `lab up`'s kubeconfigs hold kubelogin's exec block (post 1's flags,
/// the lab's CA and cache, a headless `--browser-command`): the first kubectl logs in through
/// Kanidm's pages, the next one answers from kubelogin's cache, and a forced refresh needs
/// no browser.
#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_in_through_kubelogin_when_it_is_found() {
    harness::init_crypto();
    let mut missing = harness::tools::missing_for_local();
    if harness::tools::KUBELOGIN.find().is_none() {
        missing.push("kubelogin");
    }
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let s = harness::scenario::load_file(&root.join("scenarios/post1-structured.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lab_dir = dir.path().join("lab");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
    let running = harness::testsupport::local_lab_with(&s, &lab_dir, &exe, true)
        .await
        .unwrap();
    assert!(
        running
            .state
            .kubelogin
            .as_deref()
            .is_some_and(|k| k.starts_with("kubelogin v")),
        "{:?}",
        running.state.kubelogin
    );
    let kubeconfig = running.state.persons["bob"].kubeconfig.clone().unwrap();
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    for want in [
        "get-token",
        "--oidc-client-id=k8s",
        "--oidc-extra-scope=profile,groups,email",
        "--certificate-authority=",
        "--token-cache-dir=",
        "--browser-command=",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    let kubectl = harness::tools::KUBECTL.require().unwrap();
    let whoami = || {
        let (kubectl, kc) = (kubectl.clone(), kubeconfig.clone());
        async move {
            tokio::process::Command::new(&kubectl)
                .arg(format!("--kubeconfig={}", kc.display()))
                .args(["auth", "whoami", "-o", "json"])
                .output()
                .await
                .unwrap()
        }
    };
    let out = whoami().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "bob@localhost");
    let t = std::time::Instant::now();
    let again = whoami().await;
    assert!(again.status.success());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "kubelogin's cache not used: {:?}",
        t.elapsed()
    );
    let cache = lab_dir.join("kubelogin-cache/bob");
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert!(
        !entries.is_empty(),
        "no kubelogin cache in {}",
        cache.display()
    );
    running.shutdown().await;
    assert!(!lab_dir.exists(), "lab secrets must go with the lab");
}
