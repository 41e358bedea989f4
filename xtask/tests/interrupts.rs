//! Whatever ends a run, nothing of it survives: `cargo xtask e2e` on the local backend is
//! killed with SIGTERM, SIGHUP and SIGKILL at several points (start-up, logins, checks).
//! SIGTERM/SIGHUP: exit 130, no process of the run and no lab directory left. SIGKILL: no
//! process left at all (parent-death signal), and `cargo xtask clean` removes the lab
//! directory. Needs the real components; skipped loudly (or failed with
//! `LAB_REQUIRE_REAL=1`) where they are missing.

use harness::skipped;
use harness::testsupport::{alive, descendants};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lab_dirs_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("kanidm-k8s-lab-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Start a run, let it get `after` in, send `signal`; returns the run's pid, its exit code
/// and the processes it had started at that moment.
fn interrupt(artifacts: &Path, after: Duration, signal: i32) -> (u32, Option<i32>, BTreeSet<u32>) {
    let mut child = xtask()
        .args([
            "e2e",
            "--backend",
            "local",
            "--scenario",
            // About 25 s of work (stopping Kanidm: the API server's authenticator recovers
            // on its own back-off, 18-21 s), so every signal below lands in the middle of
            // the run. (The signing-key steps no longer wait out the token cache: 4-7 s.)
            "post1-structured,post2-as-written,lifecycle-kanidm-down",
        ])
        .arg("--artifacts")
        .arg(artifacts)
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(after);
    let started = descendants(pid);
    // SAFETY: kill(2) on the child we just started.
    unsafe {
        libc::kill(pid as i32, signal);
    }
    let t = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the run did not end within 60 s of signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (pid, code, started)
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[test]
fn nothing_of_a_run_survives_sigterm_sighup_or_sigkill() {
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for (signal, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        // Start-up (PKI, etcd, Kanidm), logins, and checks/API-server restarts.
        for secs in [2, 6, 10] {
            let (pid, code, started) = interrupt(
                &dir.path().join(format!("{name}-{secs}")),
                Duration::from_secs(secs),
                signal,
            );
            assert_ne!(
                code,
                Some(0),
                "{name} at {secs} s: the run ended before the signal; it needs more work"
            );
            if signal == libc::SIGKILL {
                assert_eq!(code, None, "{name} at {secs} s: killed by the signal");
            } else {
                assert_eq!(code, Some(130), "{name} at {secs} s: exit code");
            }
            // Children get a moment to receive their parent-death signal.
            let t = Instant::now();
            let mut left: Vec<u32> = started.iter().copied().filter(|p| alive(*p)).collect();
            while !left.is_empty() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
                left.retain(|p| alive(*p));
            }
            assert!(
                left.is_empty(),
                "{name} at {secs} s: {} of {} processes survived: {left:?}",
                left.len(),
                started.len()
            );
            assert_ne!(
                code,
                Some(0),
                "{name} at {secs} s: the run ended before the signal; it needs more work"
            );
            if signal == libc::SIGKILL {
                let clean = xtask().arg("clean").status().unwrap();
                assert!(clean.success(), "cargo xtask clean failed");
            }
            let dirs = lab_dirs_of(pid);
            assert!(dirs.is_empty(), "{name} at {secs} s: left {dirs:?}");
            report.push(format!(
                "{name} at {secs} s: {} processes running, none left",
                started.len()
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
}
