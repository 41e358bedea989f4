//! Finding the real binaries a lab needs, and saying how to get missing ones.

use std::path::{Path, PathBuf};

/// The Kanidm server image run when none is given (kind, and the local backend without a
/// kanidmd binary).
pub const DEFAULT_KANIDM_IMAGE: &str = "kanidm/server:1.10.4";

/// One external program the harness runs.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub name: &'static str,
    /// Environment variable naming the binary directly.
    pub env: &'static str,
    /// Whether `KUBEBUILDER_ASSETS` (a directory of control-plane binaries) may hold it.
    pub in_assets_dir: bool,
    pub how_to_get: &'static str,
}

pub const KANIDMD: Tool = Tool {
    name: "kanidmd",
    env: "KANIDMD_BIN",
    in_assets_dir: false,
    how_to_get: "with Docker, no kanidmd is needed: the local backend runs the Kanidm image (`--kanidm-image`); without Docker, build kanidm 1.10 or 1.11 (`cargo build --release -p daemon --bin kanidmd`) and set KANIDMD_BIN (and KANIDM_UI_DIR to its server/core/static)",
};
pub const KUBE_APISERVER: Tool = Tool {
    name: "kube-apiserver",
    env: "KUBE_APISERVER_BIN",
    in_assets_dir: true,
    how_to_get: "`cargo xtask setup --k8s <minor>` downloads it (checksum-verified) into the user cache; or set KUBEBUILDER_ASSETS to a directory with one folder per minor (`1.36/kube-apiserver`)",
};
pub const KUBE_CONTROLLER_MANAGER: Tool = Tool {
    name: "kube-controller-manager",
    env: "KUBE_CONTROLLER_MANAGER_BIN",
    in_assets_dir: true,
    how_to_get: "`cargo xtask setup --k8s <minor>`; or put the kube-controller-manager of the same release next to kube-apiserver",
};
pub const ETCD: Tool = Tool {
    name: "etcd",
    env: "ETCD_BIN",
    in_assets_dir: true,
    how_to_get: "`cargo xtask setup` downloads it; or `apt-get install etcd-server` (Debian)",
};
pub const KUBECTL: Tool = Tool {
    name: "kubectl",
    env: "KUBECTL_BIN",
    in_assets_dir: true,
    how_to_get: "`cargo xtask setup` downloads the kubectl of each minor; or install kubectl (https://kubernetes.io/docs/tasks/tools/)",
};
pub const CHROMEDRIVER: Tool = Tool {
    name: "chromedriver",
    env: "CHROMEDRIVER_BIN",
    in_assets_dir: false,
    how_to_get: "`apt-get install chromium chromium-driver` (Debian)",
};
pub const CHROMIUM: Tool = Tool {
    name: "chromium",
    env: "CHROME_BIN",
    in_assets_dir: false,
    how_to_get: "`apt-get install chromium-headless-shell` (Debian; the lighter headless-only build, preferred when found) or `apt-get install chromium`",
};
pub const KIND: Tool = Tool {
    name: "kind",
    env: "KIND_BIN",
    in_assets_dir: false,
    how_to_get: "`cargo xtask setup --kind` downloads kind; it also needs a Docker engine",
};

pub const KUBELOGIN: Tool = Tool {
    name: "kubectl-oidc_login",
    env: "KUBELOGIN_BIN",
    in_assets_dir: false,
    how_to_get: "`cargo xtask setup` downloads int128/kubelogin (checksum-verified); or `kubectl krew install oidc-login`; or set KUBELOGIN_BIN. Only scenarios with `login.via: kubelogin` need it",
};

pub const ALL: [Tool; 9] = [
    KANIDMD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    ETCD,
    KUBECTL,
    CHROMEDRIVER,
    CHROMIUM,
    KIND,
    KUBELOGIN,
];

/// Where a tool was found, and how.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub via: String,
}

impl Tool {
    /// `$ENV`, then `$KUBEBUILDER_ASSETS/<name>`, then the user cache (`cargo xtask setup`),
    /// then `PATH`.
    pub fn find(&self) -> Option<Found> {
        if let Some(p) = std::env::var_os(self.env).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return is_executable(&p).then(|| Found {
                path: p,
                via: self.env.to_string(),
            });
        }
        if self.in_assets_dir
            && let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|p| !p.is_empty())
        {
            let p = Path::new(&dir).join(self.name);
            if is_executable(&p) {
                return Some(Found {
                    path: p,
                    via: "KUBEBUILDER_ASSETS".into(),
                });
            }
        }
        if let Some(p) = cache_dir()
            .map(|c| c.join("bin").join(self.name))
            .filter(|p| is_executable(p))
        {
            return Some(Found {
                path: p,
                via: "cache".into(),
            });
        }
        let names: &[&str] = if self.name == "chromium" {
            // The headless shell first: the same engine without the browser's UI layer,
            // ~1/4 of the full browser's CPU over the posts' logins (9.3 → 1.9 s).
            &[
                "chrome-headless-shell",
                "chromium-headless-shell",
                "chromium",
                "chromium-browser",
                "google-chrome",
            ]
        } else {
            &[self.name]
        };
        names
            .iter()
            .find_map(|n| which::which(n).ok())
            .map(|p| Found {
                path: behind_debian_wrapper(p),
                via: "PATH".into(),
            })
    }

    /// Like [`Tool::find`], with an error that says how to get the tool.
    pub fn require(&self) -> anyhow::Result<PathBuf> {
        self.find().map(|f| f.path).ok_or_else(|| {
            anyhow::anyhow!(
                "{} not found (looked at ${}{}, the cache, then PATH)\n  help: {}",
                self.name,
                self.env,
                if self.in_assets_dir {
                    ", $KUBEBUILDER_ASSETS"
                } else {
                    ""
                },
                self.how_to_get
            )
        })
    }
}

/// Debian's `/usr/bin/chromium-headless-shell` is a shell script that runs the binary
/// without `exec`: Chromium would be the script's child, out of reach of the parent-death
/// signal it is started with. The binary itself, when it is where Debian puts it.
fn behind_debian_wrapper(found: PathBuf) -> PathBuf {
    let binary = Path::new("/usr/lib/chromium/chromium-headless-shell");
    if found.file_name() == binary.file_name()
        && found.parent() != binary.parent()
        && is_executable(binary)
    {
        return binary.to_path_buf();
    }
    found
}

pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Names of the tools the local backend needs that are not found (empty: it can run).
/// Kanidm counts as found when a kanidmd binary is there, or a Docker engine that has the
/// default Kanidm image (`LAB_KANIDM_IMAGE`, else `kanidm/server:1.10.4`).
/// kube-apiserver and kube-controller-manager count as found when some minor's folder has both.
pub fn missing_for_local() -> Vec<&'static str> {
    let control_plane = local_control_plane_present(&Places::from_env());
    ALL.iter()
        .filter(|t| t.name != KIND.name)
        .filter(|t| match t.name {
            "kube-apiserver" | "kube-controller-manager" => !control_plane,
            "kanidmd" => t.find().is_none() && !default_kanidm_image_present(),
            _ => t.find().is_none(),
        })
        .map(|t| t.name)
        .collect()
}

/// Whether Docker has the image the local backend would run for Kanidm (10 s at most).
fn default_kanidm_image_present() -> bool {
    if !docker_socket_present() {
        return false;
    }
    let image = std::env::var("LAB_KANIDM_IMAGE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_KANIDM_IMAGE.to_string());
    let Ok(mut child) = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Whether a Docker engine socket is there (`DOCKER_HOST` or `/var/run/docker.sock`).
pub fn docker_socket_present() -> bool {
    std::env::var_os("DOCKER_HOST").is_some_and(|h| !h.is_empty())
        || Path::new("/var/run/docker.sock").exists()
}

/// The user cache `cargo xtask setup` fills: `$LAB_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kanidm-k8s-lab`, else `~/.cache/kanidm-k8s-lab`. Never inside the repo.
pub fn cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = nonempty("LAB_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("kanidm-k8s-lab"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("kanidm-k8s-lab"))
}

/// The control-plane binaries of one Kubernetes minor.
#[derive(Debug, Clone)]
pub struct ControlPlaneBins {
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
    /// The minor's own kubectl when it sits next to kube-apiserver, else the one on PATH.
    pub kubectl: PathBuf,
    /// kube-apiserver's `--version`, e.g. `v1.33.13`.
    pub version: String,
    /// Where they were found (`$KUBEBUILDER_ASSETS/1.33`, `cache`, …).
    pub via: String,
}

/// `v1.33.13` from `Kubernetes v1.33.13` (what every Kubernetes binary prints for `--version`).
pub fn parse_k8s_version(output: &str) -> Option<String> {
    let v = output.split_whitespace().find(|w| w.starts_with("v1."))?;
    let minor = v.strip_prefix("v1.")?.split(['.', '-', '+']).next()?;
    minor.parse::<u32>().ok().map(|_| v.to_string())
}

/// The minor of a `v1.<minor>.<patch>` string.
pub fn minor_of(version: &str) -> Option<u32> {
    version
        .strip_prefix("v1.")?
        .split(['.', '-', '+'])
        .next()?
        .parse()
        .ok()
}

/// Ask a Kubernetes binary for its version (`--version`), with a deadline.
pub async fn k8s_binary_version(bin: &Path) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(bin);
    crate::process::die_with_parent(cmd.as_std_mut());
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        cmd.arg("--version").kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("`{} --version` did not answer within 15 s", bin.display()))?
    .map_err(|e| anyhow::anyhow!("running `{} --version`: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_k8s_version(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "`{} --version` printed no Kubernetes version ({:?})",
            bin.display(),
            text.trim()
        )
    })
}

/// Where control-plane binaries are looked for, read once from the environment (tests
/// build their own).
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// `$KUBE_APISERVER_BIN`, `$KUBE_CONTROLLER_MANAGER_BIN`, `$KUBECTL_BIN`.
    pub apiserver: Option<PathBuf>,
    pub controller_manager: Option<PathBuf>,
    pub kubectl: Option<PathBuf>,
    /// `$KUBEBUILDER_ASSETS`: one folder per minor (`1.36/`), or the binaries themselves.
    pub assets: Option<PathBuf>,
    /// The user cache (`cargo xtask setup`).
    pub cache: Option<PathBuf>,
    /// kube-apiserver on PATH.
    pub on_path: Option<PathBuf>,
}

impl Places {
    pub fn from_env() -> Places {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Places {
            apiserver: var(KUBE_APISERVER.env),
            controller_manager: var(KUBE_CONTROLLER_MANAGER.env),
            kubectl: var(KUBECTL.env),
            assets: var("KUBEBUILDER_ASSETS"),
            cache: cache_dir(),
            on_path: which::which(KUBE_APISERVER.name).ok(),
        }
    }

    /// Where kube-apiserver for `minor` may be, in order, each with its name.
    fn apiserver_candidates(&self, minor: u32) -> Vec<(PathBuf, String)> {
        if let Some(p) = &self.apiserver {
            return vec![(p.clone(), format!("${}", KUBE_APISERVER.env))];
        }
        let mut out = Vec::new();
        if let Some(dir) = &self.assets {
            out.push((
                dir.join(format!("1.{minor}")).join(KUBE_APISERVER.name),
                format!("$KUBEBUILDER_ASSETS/1.{minor}"),
            ));
            out.push((dir.join(KUBE_APISERVER.name), "$KUBEBUILDER_ASSETS".into()));
        }
        if let Some(c) = &self.cache {
            out.push((
                c.join("k8s")
                    .join(format!("1.{minor}"))
                    .join(KUBE_APISERVER.name),
                "cache".into(),
            ));
        }
        if let Some(p) = &self.on_path {
            out.push((p.clone(), "PATH".into()));
        }
        out
    }

    /// Every folder that may hold a minor's binaries, for `doctor`.
    fn folders(&self) -> Vec<(PathBuf, String)> {
        let mut dirs = Vec::new();
        let roots = [
            (self.assets.clone(), "$KUBEBUILDER_ASSETS"),
            (self.cache.as_ref().map(|c| c.join("k8s")), "cache"),
        ];
        for (root, via) in roots {
            let Some(root) = root else { continue };
            dirs.push((root.clone(), via.to_string()));
            let mut subs: Vec<PathBuf> = std::fs::read_dir(&root)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            subs.sort();
            for sub in subs {
                if let Some(n) = sub.file_name().and_then(|n| n.to_str())
                    && n.starts_with("1.")
                {
                    dirs.push((sub.clone(), format!("{via}/{n}")));
                }
            }
        }
        let single = match &self.apiserver {
            Some(p) => Some((p, format!("${}", KUBE_APISERVER.env))),
            None => self.on_path.as_ref().map(|p| (p, "PATH".to_string())),
        };
        if let Some((p, via)) = single
            && let Some(d) = p.parent()
        {
            dirs.push((d.to_path_buf(), via));
        }
        dirs
    }
}

/// The kube-apiserver, kube-controller-manager and kubectl of one minor: `$KUBE_APISERVER_BIN`
/// if set (it must be that minor), else the first of `$KUBEBUILDER_ASSETS/1.<minor>/`,
/// `$KUBEBUILDER_ASSETS/`, the cache's `k8s/1.<minor>/` and `PATH` whose kube-apiserver
/// reports that minor. kube-controller-manager must sit next to it (or be given by
/// `$KUBE_CONTROLLER_MANAGER_BIN`) and be the same minor.
pub async fn control_plane_for(places: &Places, minor: u32) -> anyhow::Result<ControlPlaneBins> {
    let mut seen = Vec::new();
    for (path, via) in places.apiserver_candidates(minor) {
        if !is_executable(&path) {
            seen.push(format!("{via}: no {}", path.display()));
            continue;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let kcm = places
            .controller_manager
            .clone()
            .unwrap_or_else(|| dir.join(KUBE_CONTROLLER_MANAGER.name));
        // Both versions at once (~80 ms each, before every run); kube-controller-manager's
        // counts only once kube-apiserver is the minor asked for.
        let kcm_present = is_executable(&kcm);
        let (version, kcm_version) = tokio::join!(k8s_binary_version(&path), async {
            match kcm_present {
                true => Some(k8s_binary_version(&kcm).await),
                false => None,
            }
        });
        let version = match version {
            Ok(v) => v,
            Err(e) => {
                seen.push(format!("{via}: {e:#}"));
                continue;
            }
        };
        if minor_of(&version) != Some(minor) {
            seen.push(format!("{via}: {} is {version}", path.display()));
            continue;
        }
        let Some(kcm_version) = kcm_version else {
            anyhow::bail!(
                "kube-apiserver {version} ({}) has no kube-controller-manager next to it ({})\n  help: {}",
                path.display(),
                kcm.display(),
                KUBE_CONTROLLER_MANAGER.how_to_get
            );
        };
        let kcm_version = kcm_version?;
        if minor_of(&kcm_version) != Some(minor) {
            anyhow::bail!(
                "kube-controller-manager {} is {kcm_version}, but kube-apiserver is {version}: use the same release",
                kcm.display()
            );
        }
        let beside = dir.join(KUBECTL.name);
        let kubectl = match &places.kubectl {
            Some(k) => k.clone(),
            None if is_executable(&beside) => beside,
            None => KUBECTL.require()?,
        };
        return Ok(ControlPlaneBins {
            apiserver: path,
            controller_manager: kcm,
            kubectl,
            version,
            via,
        });
    }
    anyhow::bail!(
        "no kube-apiserver for Kubernetes 1.{minor}; looked at:\n    {}\n  help: `cargo xtask setup --k8s 1.{minor}` downloads it, or put one in $KUBEBUILDER_ASSETS/1.{minor}/",
        if seen.is_empty() {
            "nothing (KUBEBUILDER_ASSETS unset, no cache, none on PATH)".to_string()
        } else {
            seen.join("\n    ")
        }
    )
}

/// Whether some folder holds a kube-apiserver and a kube-controller-manager: enough to make
/// the local backend the default. Nothing is run (`local_minors` asks each for its version,
/// ~80 ms a binary: 0.3 s before every run with four minors installed).
pub fn local_control_plane_present(places: &Places) -> bool {
    places.folders().iter().any(|(d, _)| {
        is_executable(&d.join(KUBE_APISERVER.name))
            && is_executable(&d.join(KUBE_CONTROLLER_MANAGER.name))
    })
}

/// The minors the local backend can run: every `1.<minor>` folder (and flat binaries)
/// under `$KUBEBUILDER_ASSETS` and the cache, and the binary on PATH, as
/// (minor, version, where); the first place per minor wins, as in [`control_plane_for`].
pub async fn local_minors(places: &Places) -> Vec<(u32, String, String)> {
    let mut out: Vec<(u32, String, String)> = Vec::new();
    for (dir, via) in places.folders() {
        let bin = dir.join(KUBE_APISERVER.name);
        if !is_executable(&bin) || !is_executable(&dir.join(KUBE_CONTROLLER_MANAGER.name)) {
            continue;
        }
        if let Ok(v) = k8s_binary_version(&bin).await
            && let Some(m) = minor_of(&v)
            && !out.iter().any(|(x, _, _)| *x == m)
        {
            out.push((m, v, via));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_kubernetes_binaries_print() {
        assert_eq!(
            parse_k8s_version("Kubernetes v1.33.13\n").as_deref(),
            Some("v1.33.13")
        );
        assert_eq!(
            parse_k8s_version("Kubernetes v1.36.2-rc.0+abc").as_deref(),
            Some("v1.36.2-rc.0+abc")
        );
        assert_eq!(parse_k8s_version("etcd Version: 3.4.23"), None);
        assert_eq!(minor_of("v1.33.13"), Some(33));
        assert_eq!(minor_of("v1.36.2-rc.0"), Some(36));
        assert_eq!(minor_of("1.36.2"), None);
    }

    /// A stand-in that prints what a Kubernetes binary prints for `--version`.
    fn fake(dir: &Path, name: &str, version: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho 'Kubernetes {version}'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn control_plane(dir: &Path, version: &str, with_kubectl: bool) {
        fake(dir, "kube-apiserver", version);
        fake(dir, "kube-controller-manager", version);
        if with_kubectl {
            fake(dir, "kubectl", version);
        }
    }

    #[tokio::test]
    async fn each_minor_gets_its_own_binaries_from_its_folder_then_the_flat_root_then_the_cache() {
        let t = tempfile::tempdir().unwrap();
        let assets = t.path().join("assets");
        let cache = t.path().join("cache");
        control_plane(&assets.join("1.33"), "v1.33.13", true);
        control_plane(&assets, "v1.36.2", true);
        control_plane(&cache.join("k8s").join("1.34"), "v1.34.9", true);
        let places = Places {
            assets: Some(assets.clone()),
            cache: Some(cache.clone()),
            ..Places::default()
        };
        let b33 = control_plane_for(&places, 33).await.unwrap();
        assert_eq!(b33.version, "v1.33.13");
        assert_eq!(b33.apiserver, assets.join("1.33/kube-apiserver"));
        assert_eq!(b33.kubectl, assets.join("1.33/kubectl"));
        assert_eq!(b33.via, "$KUBEBUILDER_ASSETS/1.33");
        // A root that holds the binaries directly keeps working, for its own minor.
        let b36 = control_plane_for(&places, 36).await.unwrap();
        assert_eq!(b36.apiserver, assets.join("kube-apiserver"));
        let b34 = control_plane_for(&places, 34).await.unwrap();
        assert_eq!(b34.via, "cache");
        // A minor that is nowhere: the error lists every place and what it held.
        let e = format!("{:#}", control_plane_for(&places, 35).await.unwrap_err());
        assert!(e.contains("no kube-apiserver for Kubernetes 1.35"), "{e}");
        assert!(e.contains("is v1.36.2"), "{e}");
        assert!(e.contains("cargo xtask setup --k8s 1.35"), "{e}");
        let minors: Vec<u32> = local_minors(&places).await.iter().map(|m| m.0).collect();
        assert_eq!(minors, vec![33, 34, 36]);
    }

    #[tokio::test]
    async fn an_explicit_binary_of_another_minor_or_a_mismatched_controller_manager_is_refused() {
        let t = tempfile::tempdir().unwrap();
        control_plane(t.path(), "v1.36.2", false);
        let places = Places {
            apiserver: Some(t.path().join("kube-apiserver")),
            kubectl: Some(PathBuf::from("/bin/true")),
            ..Places::default()
        };
        let e = format!("{:#}", control_plane_for(&places, 33).await.unwrap_err());
        assert!(
            e.contains("$KUBE_APISERVER_BIN") && e.contains("is v1.36.2"),
            "{e}"
        );
        assert!(control_plane_for(&places, 36).await.is_ok());
        fake(t.path(), "kube-controller-manager", "v1.35.6");
        let e = format!("{:#}", control_plane_for(&places, 36).await.unwrap_err());
        assert!(e.contains("use the same release"), "{e}");
    }
}
