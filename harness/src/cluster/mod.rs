//! Kubernetes API server backends. Everything but start/stop/reconfigure is shared.

pub mod apiserver_manifest;
pub mod apiserver_metrics;
pub mod jwt_init;
pub mod kind;
pub mod kubeconfig;
pub mod local;

pub use crate::render::plan::AuthSetup;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Where the Kubernetes API server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// etcd + kube-apiserver + kube-controller-manager as local processes.
    Local,
    /// A kind cluster (Docker), Kanidm as a container in the node's network namespace.
    Kind,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Local => "local",
            Backend::Kind => "kind",
        })
    }
}

/// `gitVersion` from an API server's `/version`.
pub(crate) async fn git_version(http: &reqwest::Client, server: &str) -> Option<String> {
    let r = http.get(format!("{server}/version")).send().await.ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["gitVersion"].as_str().map(str::to_string)
}

/// A position in the API server's log, to collect the lines one check caused.
#[derive(Debug, Clone)]
pub struct LogMark {
    /// The log file as the backend reads it: on this host (local), inside the node (kind).
    pub file: PathBuf,
    pub offset: u64,
}

impl LogMark {
    /// Lines written since this mark, for a log file on this host.
    pub fn lines_since(&self) -> Vec<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut out = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.file)
            && f.seek(SeekFrom::Start(self.offset)).is_ok()
        {
            let _ = f.read_to_string(&mut out);
        }
        out.lines().map(str::to_string).collect()
    }
}

/// Where a backend needs Kanidm to run so that its API server reaches the same issuer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KanidmPlacement {
    /// On this host's loopback (a kanidmd process, or a container in the host's network
    /// namespace); any number at once.
    HostLoopback,
    /// A container in this node's network namespace, on this port (one at a time).
    ContainerInNode { node: String, port: u16 },
}

/// A running API server we can point kubectl at and reconfigure between scenarios.
#[allow(async_fn_in_trait)]
pub trait ClusterBackend {
    fn name(&self) -> &'static str;
    /// `https://…` URL of the API server as kubectl on this host reaches it.
    fn server_url(&self) -> &str;
    /// A kubeconfig with cluster-admin (client certificate, O=system:masters).
    fn admin_kubeconfig(&self) -> &Path;
    /// The kubectl the checks run (the minor's own, where it was found next to its API server).
    fn kubectl(&self) -> &Path;
    /// Where the API server reads the Kanidm CA for `--oidc-ca-file`.
    fn ca_path_for_apiserver(&self) -> String;
    /// Where Kanidm must run for this backend.
    fn kanidm_placement(&self) -> KanidmPlacement {
        KanidmPlacement::HostLoopback
    }
    /// Apply `auth` (restart or reload as the backend does fastest) and wait until ready.
    async fn configure_auth(&mut self, auth: &AuthSetup) -> Result<()>;
    /// Forget what the API server runs, so the next [`ClusterBackend::configure_auth`]
    /// restarts it even with the same authentication (a step's `restartApiServer`); API
    /// servers prepared ahead are discarded too.
    fn forget_auth(&mut self);
    /// The configurations the next scenarios will ask for, in order (the current one may be
    /// first): a backend that can start API servers side by side starts them now, so that
    /// [`ClusterBackend::configure_auth`] adopts a ready one instead of restarting; those no
    /// longer wanted are stopped. Only for a Kanidm the next scenarios will find as it is
    /// (the caller discards them otherwise). Default: nothing.
    async fn prepare(&mut self, _wanted: &[AuthSetup]) -> Result<()> {
        Ok(())
    }
    /// Said before [`ClusterBackend::configure_auth`]: the configurations the caller will
    /// [`ClusterBackend::prepare`] once it returns. A backend that starts an API server for
    /// it may start these as soon as that one's CPU-heavy start-up is over, instead of at
    /// its `/readyz`. Default: nothing.
    fn will_prepare(&mut self, _wanted: &[AuthSetup]) {}
    /// Stop every API server prepared ahead (Kanidm was replaced, say).
    async fn discard_prepared(&mut self) {}
    /// Whether the last [`ClusterBackend::configure_auth`] changed the config without a new
    /// API server process: tokens that succeeded within 10 s before it may still be answered
    /// from the API server's token cache.
    fn reloaded_in_place(&self) -> bool {
        false
    }
    /// CA file that verifies the API server's serving certificate (for kubeconfigs).
    fn server_ca_file(&self) -> PathBuf;
    /// Current end of the API server log.
    async fn log_mark(&self) -> LogMark;
    /// API server log lines written since `mark`.
    async fn log_lines_since(&self, mark: &LogMark) -> Vec<String> {
        mark.lines_since()
    }
    /// Copy every component log into `dir` (artifacts).
    async fn collect_logs(&self, dir: &Path) -> Result<()>;
    /// The API server's reported version (`/version` gitVersion), once it runs.
    async fn server_version(&self) -> Option<String> {
        None
    }
    /// Stop everything; idempotent.
    async fn shutdown(&mut self);
}
