//! `cargo xtask setup` as a user runs it, against a loopback mirror (no network): exit 0 and
//! where things went; exit 2 on a checksum mismatch; Ctrl-C in the middle of a download
//! exits 130 and leaves nothing half-installed.

use harness::testsupport::mirror::{Mirror, Serve, sha256_hex};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn k8s_path(bin: &str) -> String {
    format!(
        "/release/v1.34.9/bin/linux/{}/{bin}",
        harness::setup::arch().unwrap()
    )
}

fn mirror() -> Mirror {
    let m = Mirror::start();
    for bin in harness::setup::K8S_BINARIES {
        m.put_with_sha256(
            &k8s_path(bin),
            b"#!/bin/sh\necho 'Kubernetes v1.34.9'\n".to_vec(),
        );
    }
    m
}

/// `xtask setup --k8s 1.34` with nothing installed but what the cache gets.
fn setup_cmd(m: &Mirror, cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args([
        "setup",
        "--k8s",
        "1.34",
        "--skip-etcd",
        "--skip-kind",
        "--skip-kubelogin",
        "--mirror",
    ])
    .arg(&m.url)
    .env("LAB_CACHE_DIR", cache)
    .env("PATH", "/usr/bin:/bin")
    .env_remove("KUBEBUILDER_ASSETS")
    .env_remove("KUBE_APISERVER_BIN")
    .env_remove("KUBE_CONTROLLER_MANAGER_BIN")
    .env_remove("LAB_MIRROR");
    c
}

fn left_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn setup_from_a_mirror_installs_and_says_where() {
    let m = mirror();
    let cache = tempfile::tempdir().unwrap();
    let out = setup_cmd(&m, cache.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Kubernetes 1.34: v1.34.9 in"), "{stdout}");
    // Run again: already there, nothing downloaded.
    let out = setup_cmd(&m, cache.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("already here (cache"), "{stdout}");
}

#[test]
fn a_checksum_mismatch_exits_2_and_installs_nothing() {
    let m = mirror();
    m.put(
        &format!("{}.sha256", k8s_path("kubectl")),
        Serve::Whole(sha256_hex(b"not kubectl").into_bytes()),
    );
    let cache = tempfile::tempdir().unwrap();
    let out = setup_cmd(&m, cache.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(left_in(&cache.path().join("k8s")).is_empty());
}

#[test]
fn ctrl_c_during_a_download_exits_130_and_leaves_nothing() {
    let m = mirror();
    let body = vec![b'x'; 1024 * 1024];
    let path = k8s_path("kube-apiserver");
    m.put(
        &format!("{path}.sha256"),
        Serve::Whole(sha256_hex(&body).into_bytes()),
    );
    m.put(&path, Serve::Stall(body));
    let cache = tempfile::tempdir().unwrap();
    let child = setup_cmd(&m, cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the download is under way (its partial file has bytes).
    let k8s = cache.path().join("k8s");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partial = left_in(&k8s)
            .into_iter()
            .find(|n| n.contains(".partial-"))
            .map(|n| k8s.join(n).join("kube-apiserver"));
        if partial.is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0)) {
            break;
        }
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("nothing half-installed"), "{stderr}");
    assert!(left_in(&k8s).is_empty(), "left: {:?}", left_in(&k8s));
}
