//! `cargo xtask verify` against a `lab up` lab, treated as someone's own cluster: for post 1
//! and post 2 it must reproduce what `e2e` found for the same scenario, check for check
//! (e2e's `login` is verify's `token`; e2e-only checks aside). Real kanidmd, kube-apiserver,
//! kubectl and Chromium; skipped loudly when any is missing.

use harness::skipped;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (person, check, passed) as a set, `login` renamed `token`.
fn checks(results: &[harness::check::CheckResult]) -> BTreeSet<(String, String, bool)> {
    results
        .iter()
        .filter(|r| r.check != "explain agrees")
        .map(|r| {
            let check = if r.check == "login" {
                "token".to_string()
            } else {
                r.check.clone()
            };
            (r.person.clone(), check, r.passed)
        })
        .collect()
}

async fn e2e_of(name: &str, artifacts: &std::path::Path) -> harness::run::RunReport {
    let s = harness::scenario::load_file(&root().join(format!("scenarios/{name}.yaml"))).unwrap();
    harness::run::e2e(harness::testsupport::e2e_options(vec![s], artifacts))
        .await
        .unwrap()
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn verify_on_a_lab_reproduces_e2e_for_post1_and_post2() {
    harness::init_crypto();
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
    for name in ["post1-structured", "post2-as-written"] {
        let dir = tempfile::tempdir().unwrap();
        let expected = checks(&e2e_of(name, &dir.path().join("artifacts")).await.results);
        assert!(
            expected.iter().all(|(_, _, ok)| *ok),
            "{name}: e2e itself failed: {expected:?}"
        );
        let s =
            harness::scenario::load_file(&root().join(format!("scenarios/{name}.yaml"))).unwrap();
        let lab_dir = dir.path().join("lab");
        let running = harness::testsupport::local_lab(&s, &lab_dir, &exe)
            .await
            .unwrap();
        // Exactly what `lab up` tells a user to run.
        let mut args = vec![
            "verify".to_string(),
            "--scenario".into(),
            name.into(),
            "--junit".into(),
            dir.path().join("junit.xml").to_string_lossy().into_owned(),
        ];
        for (person, p) in &running.state.persons {
            let kc = p.kubeconfig.clone().unwrap();
            args.extend(["--user".into(), format!("{person}={}", kc.display())]);
        }
        args.extend(running.state.auth_args.clone());
        let kubectl = harness::tools::KUBECTL.require().unwrap();
        let out = tokio::process::Command::new(&exe)
            .args(&args)
            .args([
                "--kubectl".to_string(),
                kubectl.to_string_lossy().into_owned(),
            ])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        running.shutdown().await;
        assert_eq!(out.status.code(), Some(0), "{name}:\n{stdout}\n{stderr}");
        let n = expected.len();
        assert!(
            stdout.contains(&format!("{n} checks, {n} passed, 0 failed")),
            "{name}: verify ran other checks than e2e ({n}):\n{stdout}"
        );
        // Check for check: every e2e line appears in verify's table as `ok` with that check.
        for (person, check, _) in &expected {
            assert!(
                stdout.lines().any(|l| l.starts_with("ok")
                    && l.contains(&format!(" {person} "))
                    && l.contains(&format!(" {check} "))),
                "{name}: verify has no passing `{person} {check}`:\n{stdout}"
            );
        }
        if name == "post2-as-written" {
            // The 401 is diagnosed by explain, with the API server's own words.
            assert!(
                stdout.contains("expected [\"RS256\"] got \"ES256\""),
                "{stdout}"
            );
        }
        let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
        assert!(junit.contains("<testsuite"), "{junit}");
    }
}

/// `scenarios import` of post 1's own files, then `verify` of that imported scenario,
/// unchanged, against a cluster set up as post 1 (a `lab up` lab stands in for it): the
/// placeholders resolve from the person's token, and alice has view and not more.
#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn verify_accepts_an_imported_scenario_unchanged() {
    harness::init_crypto();
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
    let dir = tempfile::tempdir().unwrap();
    let fx = root().join("harness/tests/import/post1");
    let imported = dir.path().join("post1-imported.yaml");
    let out = std::process::Command::new(&exe)
        .args(["scenarios", "import", "--kanidm-commands"])
        .arg(fx.join("commands.sh"))
        .args(["--set", "whoami=alice", "--auth-config"])
        .arg(fx.join("auth-config.yaml"))
        .arg("--rbac")
        .arg(fx.join("rbac.yaml"))
        .arg("--kubeconfig")
        .arg(fx.join("kubeconfig-user.yaml"))
        .args(["--name", "post1-imported", "-o"])
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The user's cluster: post 1 done by hand (here: the shipped scenario's lab).
    let s = harness::scenario::load_file(&root().join("scenarios/post1-structured.yaml")).unwrap();
    let lab_dir = dir.path().join("lab");
    let running = harness::testsupport::local_lab(&s, &lab_dir, &exe)
        .await
        .unwrap();
    let alice = running.state.persons["alice"].kubeconfig.clone().unwrap();
    let kubectl = harness::tools::KUBECTL.require().unwrap();
    let out = tokio::process::Command::new(&exe)
        .arg("verify")
        .arg("--scenario")
        .arg(&imported)
        .arg("--user")
        .arg(format!("alice={}", alice.display()))
        .args(running.state.auth_args.clone())
        .arg("--kubectl")
        .arg(&kubectl)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    running.shutdown().await;
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for check in [
        "whoami",
        "allowed: list pods -A",
        "forbidden: delete namespace scratch",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with("ok")
                && l.contains(" post1-imported ")
                && l.contains(" alice ")
                && l.contains(&format!(" {check} "))),
            "no passing `alice {check}`:\n{stdout}"
        );
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
