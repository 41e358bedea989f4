//! `cargo xtask setup`'s real download code against a loopback mirror (no network): the
//! happy path installs a minor the local backend then finds; a checksum mismatch, a 404 and
//! a transfer cut short each fail with a clear error and leave nothing in the cache.

use harness::progress::Progress;
use harness::render::K8sVersion;
use harness::setup::{self, Source};
use harness::testsupport::mirror::{Mirror, Serve, sha256_hex};
use std::path::Path;

const V: K8sVersion = K8sVersion { minor: 34 };

fn quiet() -> Progress {
    let mut p = Progress::default();
    p.quiet = true;
    p
}

/// A stand-in binary that answers `--version` like a Kubernetes binary of `version`.
fn fake_binary(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho 'Kubernetes {version}'\n").into_bytes()
}

fn k8s_path(bin: &str) -> String {
    format!(
        "/release/v1.34.9/bin/linux/{}/{bin}",
        setup::arch().unwrap()
    )
}

/// A mirror holding Kubernetes 1.34's three binaries (and their `.sha256` files).
fn mirror_with_k8s() -> Mirror {
    let m = Mirror::start();
    for bin in setup::K8S_BINARIES {
        m.put_with_sha256(&k8s_path(bin), fake_binary("v1.34.9"));
    }
    m
}

/// Installing 1.34 must fail; the error, with its causes.
async fn install_error(src: &Source, cache: &Path) -> String {
    format!(
        "{:#}",
        setup::install_k8s(src, cache, V, &quiet())
            .await
            .unwrap_err()
    )
}

/// Nothing but what a successful install leaves: no `.partial` leftovers, no minor folder.
fn assert_nothing_installed(cache: &Path) {
    let k8s = cache.join("k8s");
    let left: Vec<String> = std::fs::read_dir(&k8s)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", k8s.display());
}

#[tokio::test]
async fn a_minor_installed_from_the_mirror_is_what_the_local_backend_then_runs() {
    let m = mirror_with_k8s();
    let cache = tempfile::tempdir().unwrap();
    let src = Source::new(Some(&m.url)).unwrap();
    let dir = setup::install_k8s(&src, cache.path(), V, &quiet())
        .await
        .unwrap();
    assert_eq!(dir, cache.path().join("k8s/1.34"));
    let places = harness::tools::Places {
        cache: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let bins = harness::tools::control_plane_for(&places, 34)
        .await
        .unwrap();
    assert_eq!(bins.version, "v1.34.9");
    assert_eq!(bins.via, "cache");
    assert_eq!(bins.kubectl, dir.join("kubectl"));
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains(&sha256_hex(&fake_binary("v1.34.9"))),
        "{sums}"
    );
    // Installing again replaces the folder whole.
    setup::install_k8s(&src, cache.path(), V, &quiet())
        .await
        .unwrap();
    let names: Vec<String> = std::fs::read_dir(cache.path().join("k8s"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["1.34".to_string()]);
}

#[tokio::test]
async fn a_checksum_mismatch_installs_nothing() {
    let m = mirror_with_k8s();
    let path = k8s_path("kube-controller-manager");
    m.put(
        &format!("{path}.sha256"),
        Serve::Whole(sha256_hex(b"something else").into_bytes()),
    );
    let cache = tempfile::tempdir().unwrap();
    let src = Source::new(Some(&m.url)).unwrap();
    let e = install_error(&src, cache.path()).await;
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(e.contains("kube-controller-manager"), "{e}");
    assert_nothing_installed(cache.path());
}

#[tokio::test]
async fn a_missing_file_is_a_404_that_names_the_url() {
    let m = mirror_with_k8s();
    m.remove(&k8s_path("kubectl"));
    let cache = tempfile::tempdir().unwrap();
    let src = Source::new(Some(&m.url)).unwrap();
    let e = install_error(&src, cache.path()).await;
    assert!(e.contains("404"), "{e}");
    assert!(
        e.contains(&format!("{}{}", m.url, k8s_path("kubectl"))),
        "{e}"
    );
    assert_nothing_installed(cache.path());
    // A missing checksum file is a 404 too, before anything is downloaded.
    m.remove(&format!("{}.sha256", k8s_path("kube-apiserver")));
    let e = install_error(&src, cache.path()).await;
    assert!(e.contains("404") && e.contains(".sha256"), "{e}");
    assert_nothing_installed(cache.path());
}

#[tokio::test]
async fn a_transfer_cut_short_installs_nothing() {
    let m = mirror_with_k8s();
    let path = k8s_path("kube-apiserver");
    let body = vec![b'x'; 256 * 1024];
    m.put(
        &format!("{path}.sha256"),
        Serve::Whole(sha256_hex(&body).into_bytes()),
    );
    m.put(&path, Serve::CutShort(body));
    let cache = tempfile::tempdir().unwrap();
    let src = Source::new(Some(&m.url)).unwrap();
    let e = install_error(&src, cache.path()).await;
    assert!(e.contains("broke off") || e.contains("cut short"), "{e}");
    assert_nothing_installed(cache.path());
}

#[tokio::test]
async fn etcd_comes_out_of_its_verified_tarball_and_kind_is_verified_too() {
    let m = Mirror::start();
    let arch = setup::arch().unwrap();
    let stem = format!("etcd-{}-linux-{arch}", setup::ETCD_RELEASE);
    let mut tarball = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tarball, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, body) in [
            (format!("{stem}/README.md"), b"readme".to_vec()),
            (format!("{stem}/etcd"), b"#!/bin/sh\necho etcd\n".to_vec()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_slice()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }
    let dir = format!("/etcd-io/etcd/releases/download/{}", setup::ETCD_RELEASE);
    m.put(
        &format!("{dir}/SHA256SUMS"),
        Serve::Whole(
            format!(
                "{}  etcd-other.tar.gz\n{}  {stem}.tar.gz\n",
                "0".repeat(64),
                sha256_hex(&tarball)
            )
            .into_bytes(),
        ),
    );
    m.put(&format!("{dir}/{stem}.tar.gz"), Serve::Whole(tarball));
    let kind = format!(
        "/kubernetes-sigs/kind/releases/download/{}/kind-linux-{arch}",
        setup::KIND_RELEASE
    );
    let kind_body = b"#!/bin/sh\necho kind\n".to_vec();
    m.put(
        &format!("{kind}.sha256sum"),
        Serve::Whole(format!("{}  kind-linux-{arch}\n", sha256_hex(&kind_body)).into_bytes()),
    );
    m.put(&kind, Serve::Whole(kind_body));
    let cache = tempfile::tempdir().unwrap();
    let src = Source::new(Some(&m.url)).unwrap();
    let etcd = setup::install_etcd(&src, cache.path(), &quiet())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&etcd).unwrap(), b"#!/bin/sh\necho etcd\n");
    let kind = setup::install_kind(&src, cache.path(), &quiet())
        .await
        .unwrap();
    assert_eq!(kind, cache.path().join("bin/kind"));
    let names: Vec<String> = std::fs::read_dir(cache.path().join("bin"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only etcd and kind, no tarball or partials: {names:?}"
    );
}

#[tokio::test]
async fn kubelogin_comes_out_of_its_verified_zip_under_the_plugin_name() {
    use std::io::Write;
    let m = Mirror::start();
    let arch = setup::arch().unwrap();
    let file = format!("kubelogin_linux_{arch}.zip");
    let body = b"#!/bin/sh\necho kubelogin version v1.36.3\n".to_vec();
    let mut zipped = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zipped));
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("LICENSE", opts).unwrap();
        z.write_all(b"license").unwrap();
        z.start_file("kubelogin", opts).unwrap();
        z.write_all(&body).unwrap();
        z.finish().unwrap();
    }
    let url = format!(
        "/int128/kubelogin/releases/download/{}/{file}",
        setup::KUBELOGIN_RELEASE
    );
    let src = Source::new(Some(&m.url)).unwrap();
    // A zip that does not match its published checksum installs nothing.
    m.put(
        &format!("{url}.sha256"),
        Serve::Whole(format!("{}  {file}\n", "0".repeat(64)).into_bytes()),
    );
    m.put(&url, Serve::Whole(zipped.clone()));
    let cache = tempfile::tempdir().unwrap();
    let e = setup::install_kubelogin(&src, cache.path(), &quiet())
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("SHA-256") || format!("{e:#}").contains("checksum"),
        "{e:#}"
    );
    let left: Vec<_> = std::fs::read_dir(cache.path().join("bin"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a failed install leaves nothing: {left:?}");
    m.put(
        &format!("{url}.sha256"),
        Serve::Whole(format!("{}  {file}\n", sha256_hex(&zipped)).into_bytes()),
    );
    let p = setup::install_kubelogin(&src, cache.path(), &quiet())
        .await
        .unwrap();
    assert_eq!(p, cache.path().join("bin/kubectl-oidc_login"));
    assert_eq!(std::fs::read(&p).unwrap(), body);
    let names: Vec<String> = std::fs::read_dir(cache.path().join("bin"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["kubectl-oidc_login".to_string()],
        "no zip or partials left"
    );
}
