//! Everything a run starts listens on loopback only: etcd, kube-apiserver, kanidmd,
//! chromedriver, Chromium's DevTools, the redirect listener. Sampled with `ss` all through
//! a real run. Needs the real components; skipped loudly (or failed with
//! `LAB_REQUIRE_REAL=1`) where missing.

use harness::skipped;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `root` and every live descendant.
fn family(root: u32) -> BTreeSet<u32> {
    let mut all = harness::testsupport::descendants(root);
    all.insert(root);
    all
}

/// (local address, process name) of every TCP listener whose pid is in `pids`.
fn listeners(pids: &BTreeSet<u32>) -> Vec<(String, String)> {
    let Ok(out) = Command::new("ss").args(["-ltnpH"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local = cols.get(3)?.to_string();
            let users = cols.get(5)?;
            let pid: u32 = users
                .split("pid=")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            let name = users.split('"').nth(1)?.to_string();
            pids.contains(&pid).then_some((local, name))
        })
        .collect()
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[test]
fn every_listener_of_a_run_is_on_loopback() {
    let missing = harness::tools::missing_for_local();
    if !missing.is_empty() {
        skipped!("needs {} (see `cargo xtask doctor`)", missing.join(", "));
        return;
    }
    if Command::new("ss").arg("-V").output().is_err() {
        skipped!("needs `ss` (iproute2) to list listening sockets");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "e2e",
            "--backend",
            "local",
            "--scenario",
            "post1-structured,post2-*",
            "--artifacts",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    while child.try_wait().unwrap().is_none() {
        for (addr, name) in listeners(&family(child.id())) {
            seen.entry(name).or_default().insert(addr);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let loopback = |a: &str| a.starts_with("127.0.0.1:") || a.starts_with("[::1]:");
    let open: Vec<String> = seen
        .iter()
        .flat_map(|(n, addrs)| {
            addrs
                .iter()
                .filter(|a| !loopback(a))
                .map(move |a| format!("{n} {a}"))
        })
        .collect();
    assert!(
        open.is_empty(),
        "listening beyond loopback: {open:?}\nall: {seen:#?}"
    );
    for needed in ["etcd", "kube-apiserver", "kanidmd", "chromedriver", "xtask"] {
        assert!(
            seen.keys().any(|n| n.starts_with(needed)),
            "never saw {needed} listening; saw {seen:#?}"
        );
    }
    eprintln!("listeners seen: {seen:#?}");
}
