//! Two runs at once on one machine (two CI jobs, a user and a CI job) both pass: ports are
//! re-picked when another run takes one first, etcd is checked to be the run's own, and the
//! fixed redirect port of post 2 (8000) is waited for rather than fought over. Neither
//! writes to the user's home: each runs with an empty `HOME` of its own (kubectl's discovery
//! cache, Chromium's crash reports and NSS database, kubelogin's token cache all stay in the
//! lab), and it is still empty after. Needs the real components; skipped loudly (or failed
//! with `LAB_REQUIRE_REAL=1`) where missing.

use harness::skipped;
use std::process::{Command, Stdio};

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[test]
fn two_runs_started_together_both_pass() {
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = |n: usize| dir.path().join(format!("home-{n}"));
    let start = |n: usize| {
        std::fs::create_dir_all(home(n)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "e2e",
                "--backend",
                "local",
                "--scenario",
                "post1-structured,post2-*,kubelogin-post1",
                "--artifacts",
            ])
            .arg(dir.path().join(format!("run-{n}")))
            .env("HOME", home(n))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_DATA_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(1), start(2));
    for (n, child) in [(1, a), (2, b)] {
        let out = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "run {n}:\n{report}");
        assert!(report.contains(" 0 failed"), "run {n}:\n{report}");
        let left: Vec<_> = walk(&home(n));
        assert!(left.is_empty(), "run {n} wrote to its HOME: {left:?}");
    }
}

/// Every file and directory under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}
