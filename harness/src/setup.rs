//! `cargo xtask setup`: the pinned Kubernetes control plane of each minor, etcd, kind and kubelogin,
//! downloaded into the user cache ([`crate::tools::cache_dir`], never the repository), each
//! file verified against the checksum file published next to it.
//!
//! Upstream layout (a mirror serves the same paths under its own base URL):
//! - `https://dl.k8s.io/release/v1.36.2/bin/linux/amd64/kube-apiserver` and `….sha256`
//! - `https://github.com/etcd-io/etcd/releases/download/v3.6.4/etcd-v3.6.4-linux-amd64.tar.gz`
//!   and `SHA256SUMS` in the same folder
//! - `https://github.com/kubernetes-sigs/kind/releases/download/v0.33.0/kind-linux-amd64` and
//!   `….sha256sum` (v0.33.0: the release that published the node images `kind-configs/` pins
//!   for 1.34–1.37)
//! - `https://github.com/int128/kubelogin/releases/download/v1.36.3/kubelogin_linux_amd64.zip`
//!   and `….zip.sha256`; its `kubelogin` becomes `<cache>/bin/kubectl-oidc_login`
//!
//! Nothing is ever half-installed: a minor is downloaded into a `.partial` folder that is
//! renamed into place only when every file verified, and removed on any error or
//! interruption (dropping the future drops the guard).

use crate::progress::Progress;
use crate::render::K8sVersion;
use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Kubernetes release of each minor `setup` installs (the patch releases the suite was
/// run against).
pub const K8S_RELEASES: [(u32, &str); 5] = [
    (32, "v1.32.13"),
    (33, "v1.33.13"),
    (34, "v1.34.9"),
    (35, "v1.35.6"),
    (36, "v1.36.2"),
];
pub const ETCD_RELEASE: &str = "v3.6.4";
pub const KIND_RELEASE: &str = "v0.33.0";
/// int128/kubelogin, the client both posts use (`kubectl oidc-login`).
pub const KUBELOGIN_RELEASE: &str = "v1.36.3";

/// The control-plane binaries of a minor, as named in the release.
pub const K8S_BINARIES: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kubectl"];

/// Where downloads come from: the upstream hosts, or one mirror serving their paths.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://dl.k8s.io` or the mirror.
    pub k8s_base: String,
    /// `https://github.com` or the mirror.
    pub github_base: String,
    http: reqwest::Client,
}

impl Source {
    /// The upstream hosts, or `mirror` (`--mirror`, `LAB_MIRROR`) for both.
    pub fn new(mirror: Option<&str>) -> Result<Source> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()
            .context("building the download client")?;
        let (k8s_base, github_base) = match mirror {
            Some(m) => {
                let m = m.trim_end_matches('/');
                let url = reqwest::Url::parse(m).map_err(|e| {
                    anyhow!("--mirror `{m}` is not a URL ({e}); write it like https://mirror.example/k8s")
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    bail!("--mirror `{m}`: only http:// and https:// mirrors are supported");
                }
                (m.to_string(), m.to_string())
            }
            None => ("https://dl.k8s.io".into(), "https://github.com".into()),
        };
        Ok(Source {
            k8s_base,
            github_base,
            http,
        })
    }
}

/// The release architecture name of this machine.
pub fn arch() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => bail!("no Kubernetes/etcd/kind release binaries for the `{other}` architecture"),
    }
}

/// The pinned release of `v`'s minor.
pub fn k8s_release(v: K8sVersion) -> Result<&'static str> {
    K8S_RELEASES
        .iter()
        .find(|(m, _)| *m == v.minor)
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            let known: Vec<String> = K8S_RELEASES.iter().map(|(m, _)| format!("1.{m}")).collect();
            anyhow!(
                "setup has no pinned release for Kubernetes {v}; it knows {}",
                known.join(", ")
            )
        })
}

/// The expected SHA-256 for `file` from a checksum file: a lone hex digest (`.sha256`), or
/// `<digest>  <name>` lines (`SHA256SUMS`, `.sha256sum`).
pub fn expected_digest(checksums: &str, file: &str) -> Result<String> {
    let is_digest = |t: &str| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit());
    for line in checksums.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(d), None, None) if is_digest(d) => return Ok(d.to_ascii_lowercase()),
            (Some(d), Some(name), None)
                if is_digest(d)
                    && name.trim_start_matches('*').rsplit('/').next() == Some(file) =>
            {
                return Ok(d.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    bail!("the checksum file has no SHA-256 for {file}")
}

/// Removes a path when dropped, unless disarmed: errors and interruptions leave nothing.
struct Partial {
    path: PathBuf,
    armed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Fetch a small text file (a checksum file).
async fn fetch_text(src: &Source, url: &str) -> Result<String> {
    let r = tokio::time::timeout(Duration::from_secs(120), async {
        let r = src.http.get(url).send().await?.error_for_status()?;
        r.text().await
    })
    .await
    .map_err(|_| anyhow!("{url}: no answer within 120 s"))?
    .with_context(|| format!("downloading {url}"))?;
    Ok(r)
}

/// Stream `url` into `dest`, hashing as it goes; the digest must equal `want`.
async fn download_verified(
    src: &Source,
    url: &str,
    want: &str,
    dest: &Path,
    progress: &Progress,
) -> Result<u64> {
    let mut resp = src
        .http
        .get(url)
        .send()
        .await
        .with_context(|| format!("downloading {url}"))?;
    if !resp.status().is_success() {
        bail!("downloading {url}: the server answered {}", resp.status());
    }
    let total = resp.content_length();
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    let bar = progress.bar(&name, total);
    let mut file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), resp.chunk())
            .await
            .map_err(|_| anyhow!("downloading {url}: not finished within 30 min"))?
            .with_context(|| {
                format!("downloading {url}: the transfer broke off after {got} bytes")
            })?;
        let Some(chunk) = chunk else { break };
        hasher.update(&chunk);
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", dest.display()))?;
        got += chunk.len() as u64;
        bar.set_position(got);
    }
    bar.finish_and_clear();
    file.sync_all()?;
    if let Some(t) = total
        && t != got
    {
        bail!("downloading {url}: got {got} of {t} bytes (the transfer was cut short)");
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != want {
        bail!(
            "{url}: checksum mismatch (SHA-256 {digest}, the published checksum says {want}); nothing was installed"
        );
    }
    progress.step(&format!("{name}: {got} bytes, SHA-256 verified"));
    Ok(got)
}

fn make_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", p.display()))
}

/// Leftovers of interrupted downloads (`.<name>.partial-<pid>`) of a process that is gone.
fn remove_stale_partials(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.rsplit_once(".partial-").map(|(_, p)| p.to_string()) else {
            continue;
        };
        let alive = Path::new("/proc").join(&pid).exists();
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Kubernetes `v`'s kube-apiserver, kube-controller-manager and kubectl into
/// `<cache>/k8s/1.<minor>/`, all verified, or nothing.
pub async fn install_k8s(
    src: &Source,
    cache: &Path,
    v: K8sVersion,
    progress: &Progress,
) -> Result<PathBuf> {
    let release = k8s_release(v)?;
    let arch = arch()?;
    let root = cache.join("k8s");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    remove_stale_partials(&root);
    let partial = Partial {
        path: root.join(format!(".{v}.partial-{}", std::process::id())),
        armed: true,
    };
    std::fs::create_dir_all(&partial.path)?;
    progress.phase(&format!("Kubernetes {v}: {release} from {}", src.k8s_base));
    let mut manifest = String::new();
    for bin in K8S_BINARIES {
        let url = format!("{}/release/{release}/bin/linux/{arch}/{bin}", src.k8s_base);
        let want = expected_digest(&fetch_text(src, &format!("{url}.sha256")).await?, bin)
            .with_context(|| format!("{url}.sha256"))?;
        let dest = partial.path.join(bin);
        download_verified(src, &url, &want, &dest, progress).await?;
        make_executable(&dest)?;
        manifest.push_str(&format!("{want}  {bin}  {url}\n"));
    }
    std::fs::write(partial.path.join("SHA256SUMS"), manifest)?;
    let target = root.join(v.to_string());
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("replacing {}", target.display()))?;
    }
    std::fs::rename(&partial.path, &target)
        .with_context(|| format!("moving the download into {}", target.display()))?;
    let mut partial = partial;
    partial.armed = false;
    Ok(target)
}

/// One verified file into `<cache>/bin/<name>` (renamed into place when verified).
async fn install_file(
    src: &Source,
    cache: &Path,
    url: &str,
    want: &str,
    name: &str,
    progress: &Progress,
) -> Result<PathBuf> {
    let bin = cache.join("bin");
    std::fs::create_dir_all(&bin)?;
    remove_stale_partials(&bin);
    let partial = Partial {
        path: bin.join(format!(".{name}.partial-{}", std::process::id())),
        armed: true,
    };
    download_verified(src, url, want, &partial.path, progress).await?;
    make_executable(&partial.path)?;
    let target = bin.join(name);
    std::fs::rename(&partial.path, &target)?;
    let mut partial = partial;
    partial.armed = false;
    Ok(target)
}

/// kind's release binary into `<cache>/bin/kind`.
pub async fn install_kind(src: &Source, cache: &Path, progress: &Progress) -> Result<PathBuf> {
    let file = format!("kind-linux-{}", arch()?);
    let url = format!(
        "{}/kubernetes-sigs/kind/releases/download/{KIND_RELEASE}/{file}",
        src.github_base
    );
    progress.phase(&format!("kind {KIND_RELEASE} from {}", src.github_base));
    let want = expected_digest(&fetch_text(src, &format!("{url}.sha256sum")).await?, &file)
        .with_context(|| format!("{url}.sha256sum"))?;
    install_file(src, cache, &url, &want, "kind", progress).await
}

/// kubelogin's release zip, verified, and its `kubelogin` binary into
/// `<cache>/bin/kubectl-oidc_login` (the name kubectl's plugin lookup wants).
pub async fn install_kubelogin(src: &Source, cache: &Path, progress: &Progress) -> Result<PathBuf> {
    let file = format!("kubelogin_linux_{}.zip", arch()?);
    let url = format!(
        "{}/int128/kubelogin/releases/download/{KUBELOGIN_RELEASE}/{file}",
        src.github_base
    );
    progress.phase(&format!(
        "kubelogin {KUBELOGIN_RELEASE} from {}",
        src.github_base
    ));
    let want = expected_digest(&fetch_text(src, &format!("{url}.sha256")).await?, &file)
        .with_context(|| format!("{url}.sha256"))?;
    let bin = cache.join("bin");
    std::fs::create_dir_all(&bin)?;
    remove_stale_partials(&bin);
    let zip = Partial {
        path: bin.join(format!(".{file}.partial-{}", std::process::id())),
        armed: true,
    };
    download_verified(src, &url, &want, &zip.path, progress).await?;
    let partial = Partial {
        path: bin.join(format!(
            ".kubectl-oidc_login.partial-{}",
            std::process::id()
        )),
        armed: true,
    };
    unzip_one(&zip.path, "kubelogin", &partial.path)?;
    make_executable(&partial.path)?;
    let target = bin.join(crate::tools::KUBELOGIN.name);
    std::fs::rename(&partial.path, &target)?;
    let mut partial = partial;
    partial.armed = false;
    Ok(target)
}

/// The one member `inner` of a zip archive, written to `dest` (bounded: 512 MiB).
fn unzip_one(archive: &Path, inner: &str, dest: &Path) -> Result<()> {
    use std::io::Read;
    let f = std::fs::File::open(archive)?;
    let mut z = zip::ZipArchive::new(f).context("reading the kubelogin zip")?;
    let mut member = z
        .by_name(inner)
        .map_err(|e| anyhow!("the kubelogin zip has no `{inner}`: {e}"))?;
    let mut out = std::fs::File::create(dest)?;
    let copied = std::io::copy(&mut (&mut member).take(512 << 20), &mut out)
        .context("extracting kubelogin")?;
    if copied >= 512 << 20 {
        bail!("`{inner}` in the kubelogin zip is larger than 512 MiB");
    }
    Ok(())
}

/// etcd's release tarball, verified, and its `etcd` binary into `<cache>/bin/etcd`.
pub async fn install_etcd(src: &Source, cache: &Path, progress: &Progress) -> Result<PathBuf> {
    let stem = format!("etcd-{ETCD_RELEASE}-linux-{}", arch()?);
    let file = format!("{stem}.tar.gz");
    let dir = format!(
        "{}/etcd-io/etcd/releases/download/{ETCD_RELEASE}",
        src.github_base
    );
    progress.phase(&format!("etcd {ETCD_RELEASE} from {}", src.github_base));
    let want = expected_digest(&fetch_text(src, &format!("{dir}/SHA256SUMS")).await?, &file)
        .with_context(|| format!("{dir}/SHA256SUMS"))?;
    let bin = cache.join("bin");
    std::fs::create_dir_all(&bin)?;
    remove_stale_partials(&bin);
    let tarball = Partial {
        path: bin.join(format!(".{file}.partial-{}", std::process::id())),
        armed: true,
    };
    download_verified(
        src,
        &format!("{dir}/{file}"),
        &want,
        &tarball.path,
        progress,
    )
    .await?;
    let partial = Partial {
        path: bin.join(format!(".etcd.partial-{}", std::process::id())),
        armed: true,
    };
    extract_one(&tarball.path, &format!("{stem}/etcd"), &partial.path)?;
    make_executable(&partial.path)?;
    let target = bin.join("etcd");
    std::fs::rename(&partial.path, &target)?;
    let mut partial = partial;
    partial.armed = false;
    Ok(target)
}

/// The one member `inner` of a `.tar.gz`, written to `dest` (no other path is touched).
fn extract_one(tarball: &Path, inner: &str, dest: &Path) -> Result<()> {
    let f = std::fs::File::open(tarball)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    for entry in archive.entries().context("reading the etcd tarball")? {
        let mut entry = entry.context("reading the etcd tarball")?;
        if entry.path().ok().as_deref() == Some(Path::new(inner)) {
            let mut out = std::fs::File::create(dest)?;
            std::io::copy(&mut entry, &mut out).context("extracting etcd")?;
            return Ok(());
        }
    }
    bail!("the etcd tarball has no {inner}")
}

/// What `setup` installs.
pub struct Plan {
    pub k8s: Vec<K8sVersion>,
    pub etcd: bool,
    pub kind: bool,
    pub kubelogin: bool,
}

/// Install everything in `plan` into `cache`; lines saying what is where.
pub async fn run(
    src: &Source,
    cache: &Path,
    plan: &Plan,
    progress: &Progress,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for v in &plan.k8s {
        let t = Instant::now();
        let dir = install_k8s(src, cache, *v, progress).await?;
        out.push(format!(
            "Kubernetes {v}: {} in {} ({:.1} s)",
            k8s_release(*v)?,
            dir.display(),
            t.elapsed().as_secs_f64()
        ));
    }
    if plan.etcd {
        let t = Instant::now();
        let p = install_etcd(src, cache, progress).await?;
        out.push(format!(
            "etcd {ETCD_RELEASE}: {} ({:.1} s)",
            p.display(),
            t.elapsed().as_secs_f64()
        ));
    }
    if plan.kind {
        let t = Instant::now();
        let p = install_kind(src, cache, progress).await?;
        out.push(format!(
            "kind {KIND_RELEASE}: {} ({:.1} s)",
            p.display(),
            t.elapsed().as_secs_f64()
        ));
    }
    if plan.kubelogin {
        let t = Instant::now();
        let p = install_kubelogin(src, cache, progress).await?;
        out.push(format!(
            "kubelogin {KUBELOGIN_RELEASE}: {} ({:.1} s)",
            p.display(),
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_in_every_upstream_format() {
        let d = "a".repeat(64);
        assert_eq!(expected_digest(&format!("{d}\n"), "kubectl").unwrap(), d);
        let sums = format!(
            "{}  etcd-v3.6.4-linux-arm64.tar.gz\n{d}  etcd-v3.6.4-linux-amd64.tar.gz\n",
            "b".repeat(64)
        );
        assert_eq!(
            expected_digest(&sums, "etcd-v3.6.4-linux-amd64.tar.gz").unwrap(),
            d
        );
        assert_eq!(
            expected_digest(&format!("{d} *kind-linux-amd64"), "kind-linux-amd64").unwrap(),
            d
        );
        assert!(expected_digest("<html>404</html>", "kubectl").is_err());
        assert!(expected_digest(&sums, "etcd-v9-linux-amd64.tar.gz").is_err());
    }

    #[test]
    fn every_supported_minor_with_a_kind_config_has_a_pinned_release() {
        assert_eq!(k8s_release(K8sVersion { minor: 36 }).unwrap(), "v1.36.2");
        let e = k8s_release(K8sVersion { minor: 30 })
            .unwrap_err()
            .to_string();
        assert!(e.contains("1.33, 1.34"), "{e}");
    }

    #[test]
    fn mirrors_must_be_http_urls() {
        assert!(Source::new(Some("ftp://x")).is_err());
        assert!(Source::new(Some("not a url")).is_err());
        let s = Source::new(Some("http://127.0.0.1:9/m/")).unwrap();
        assert_eq!(s.k8s_base, "http://127.0.0.1:9/m");
    }
}
