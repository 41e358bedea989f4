//! Two runs at once on one machine (two CI jobs, a user and a CI job) both pass: ports are
//! re-picked when another run takes one first, etcd is checked to be the run's own, and the
//! fixed redirect port of post 2 (8000) is waited for rather than fought over. Needs the
//! real components; skipped loudly (or failed with `LAB_REQUIRE_REAL=1`) where missing.

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
    let start = |n: usize| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "e2e",
                "--backend",
                "local",
                "--scenario",
                "post1-structured,post2-*",
                "--artifacts",
            ])
            .arg(dir.path().join(format!("run-{n}")))
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
    }
}
