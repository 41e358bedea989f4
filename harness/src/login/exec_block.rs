//! What a person's kubeconfig holds when kubelogin obtained their token: plain data, shared
//! by the token (`oidc::VerifiedToken`) and the kubelogin runner.

use std::path::PathBuf;

/// A token kubelogin gave: the exec block the person's kubeconfig holds (what every
/// check's kubectl runs), its cache, and what the report says about how it was obtained.
#[derive(Debug, Clone)]
pub struct KubeloginCred {
    /// The kubeconfig user's name (`oidc` after post 2's `setup`, else the person).
    pub user: String,
    pub api_version: String,
    pub command: String,
    /// The scenario's arguments plus the lab's additions, this token's cache included.
    pub args: Vec<String>,
    pub interactive_mode: Option<String>,
    pub cache_dir: PathBuf,
    /// PATH for kubectl: the lab's kubectl and kubelogin first.
    pub exec_path: String,
    /// kubelogin opened the browser for this token.
    pub browser: bool,
    /// For the report: browser or not, the authorize request, the cache, the additions.
    pub note: String,
}
