//! kind cluster configuration: the pinned base from `kind-configs/` plus this lab's auth.
//!
//! The base file for a minor pins the node image by digest and mounts the lab's
//! `apiserver/` directory into the node (extraMounts) and into the kube-apiserver static pod
//! (extraVolumes). This renderer appends one unversioned kubeadm patch with the
//! authentication flags, so kind converts it for kubeadm v1beta3 (≤1.35) and v1beta4 (1.36+).

use super::{K8sVersion, RenderError};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the lab's API-server files appear inside the node and the kube-apiserver pod.
pub const NODE_AUTHN_DIR: &str = "/etc/kubernetes/kanidm-lab";
/// Token replaced in the base configs with the host's lab `apiserver/` directory.
pub const LAB_DIR_TOKEN: &str = "${LAB_APISERVER_DIR}";

pub fn base_config_path(kind_configs: &Path, version: K8sVersion) -> PathBuf {
    kind_configs.join(format!("kind-{version}.yaml"))
}

/// Render the kind config from a base file's text.
///
/// `auth_args` are kube-apiserver flags without the leading `--` (`authentication-config=…`
/// or `oidc-…=…`), already using [`NODE_AUTHN_DIR`] paths.
pub fn render(
    base: &str,
    host_apiserver_dir: &Path,
    auth_args: &[String],
) -> Result<String, RenderError> {
    let text = base.replace(LAB_DIR_TOKEN, &host_apiserver_dir.to_string_lossy());
    let mut doc: Value =
        serde_saphyr::from_str(&text).map_err(|e| RenderError::Yaml(e.to_string()))?;
    let mut extra_args = serde_json::Map::new();
    for a in auth_args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        extra_args.insert(k.to_string(), Value::String(v.to_string()));
    }
    let patch =
        serde_json::json!({"kind": "ClusterConfiguration", "apiServer": {"extraArgs": extra_args}});
    let patch_text =
        serde_saphyr::to_string(&patch).map_err(|e| RenderError::Yaml(e.to_string()))?;
    let node = doc
        .get_mut("nodes")
        .and_then(|n| n.get_mut(0))
        .ok_or_else(|| {
            RenderError::Unsupported("kind base config has no nodes[0] (control plane)".into())
        })?;
    let obj = node.as_object_mut().ok_or_else(|| {
        RenderError::Unsupported("kind base config nodes[0] is not a mapping".into())
    })?;
    let patches = obj
        .entry("kubeadmConfigPatches")
        .or_insert_with(|| Value::Array(vec![]));
    match patches.as_array_mut() {
        Some(list) => list.push(Value::String(patch_text)),
        None => {
            return Err(RenderError::Unsupported(
                "kubeadmConfigPatches in the kind base config is not a list".into(),
            ));
        }
    }
    serde_saphyr::to_string(&doc).map_err(|e| RenderError::Yaml(e.to_string()))
}
