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

/// The kanidm/server image the kind backend runs unless told otherwise.
pub const DEFAULT_KANIDM_IMAGE: &str = crate::tools::DEFAULT_KANIDM_IMAGE;

/// Images a user substitutes for the pinned ones: air-gapped copies, mirrors, local builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOverrides {
    /// Node image per Kubernetes minor (`--node-image 1.36=<image>`).
    pub node: std::collections::BTreeMap<K8sVersion, String>,
    /// Replaces [`DEFAULT_KANIDM_IMAGE`].
    pub kanidm: Option<String>,
}

impl ImageOverrides {
    pub fn kanidm_image(&self) -> &str {
        self.kanidm.as_deref().unwrap_or(DEFAULT_KANIDM_IMAGE)
    }

    /// The node image a run of `version` uses: the override, else what `base` (the text of
    /// `kind-configs/kind-<minor>.yaml`) pins.
    pub fn node_image(&self, version: K8sVersion, base: &str) -> Option<String> {
        self.node
            .get(&version)
            .cloned()
            .or_else(|| pinned_image(base))
    }

    /// Parse one `--node-image` value: `<minor>=<image>`.
    pub fn add_node_image(&mut self, spec: &str) -> Result<(), String> {
        let (minor, image) = spec.split_once('=').ok_or_else(|| {
            format!(
                "`{spec}`: write the node image as <minor>=<image>, e.g. 1.36=kindest/node:v1.36.4"
            )
        })?;
        let v: K8sVersion = minor.parse()?;
        let image = image.trim();
        if !valid_image_ref(image) {
            return Err(format!(
                "`{image}` is not an image reference; write it like registry.example/kindest/node:v1.36.4"
            ));
        }
        if self.node.insert(v, image.to_string()).is_some() {
            return Err(format!("the node image for Kubernetes {v} is given twice"));
        }
        Ok(())
    }
}

/// The node image a base config pins.
pub fn pinned_image(base: &str) -> Option<String> {
    let doc: Value = serde_saphyr::from_str(base).ok()?;
    doc["nodes"][0]["image"].as_str().map(str::to_string)
}

pub use crate::image_ref::valid_image_ref;

/// What the host and the user add to a pinned base config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindNodeOptions {
    /// Replaces the pinned `kindest/node` image (a mirror, an air-gapped copy, a local build).
    pub node_image: Option<String>,
    /// Kubelet ≥ 1.35 refuses a cgroup v1 host unless `failCgroupV1: false`; set on such hosts.
    pub allow_cgroup_v1: bool,
}

impl KindNodeOptions {
    /// The options for `version` on a host whose Docker engine runs cgroup `cgroup_version`
    /// ("1" or "2"): the cgroup v1 patch only where kubelet needs it.
    pub fn for_host(version: K8sVersion, node_image: Option<String>, cgroup_version: &str) -> Self {
        KindNodeOptions {
            node_image,
            allow_cgroup_v1: cgroup_version.trim() == "1" && needs_cgroup_v1_opt_in(version),
        }
    }
}

/// Kubelet refuses cgroup v1 from 1.35 on unless told otherwise (KEP-5573).
pub fn needs_cgroup_v1_opt_in(version: K8sVersion) -> bool {
    version.minor >= 35
}

/// Render the kind config from a base file's text.
///
/// `auth_args` are kube-apiserver flags without the leading `--` (`authentication-config=…`
/// or `oidc-…=…`), already using [`NODE_AUTHN_DIR`] paths.
pub fn render(
    base: &str,
    host_apiserver_dir: &Path,
    auth_args: &[String],
    node_opts: &KindNodeOptions,
) -> Result<String, RenderError> {
    let text = base.replace(LAB_DIR_TOKEN, &host_apiserver_dir.to_string_lossy());
    let mut doc: Value =
        serde_saphyr::from_str(&text).map_err(|e| RenderError::Yaml(e.to_string()))?;
    let mut extra_args = serde_json::Map::new();
    for a in auth_args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        // kind's map-style extraArgs hold one value per flag: a second
        // `--oidc-required-claim` would silently replace the first.
        if extra_args.contains_key(k) {
            return Err(RenderError::Unsupported(format!(
                "--{k} is given more than once; the kind backend passes flags through kubeadm's extraArgs map, which keeps only one value per flag. Run this scenario on the local backend (`--backend local`), which passes every flag"
            )));
        }
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
    let Some(list) = patches.as_array_mut() else {
        return Err(RenderError::Unsupported(
            "kubeadmConfigPatches in the kind base config is not a list".into(),
        ));
    };
    list.push(Value::String(patch_text));
    if node_opts.allow_cgroup_v1 {
        let kubelet = serde_json::json!({"kind": "KubeletConfiguration", "failCgroupV1": false});
        list.push(Value::String(
            serde_saphyr::to_string(&kubelet).map_err(|e| RenderError::Yaml(e.to_string()))?,
        ));
    }
    if let Some(image) = &node_opts.node_image {
        obj.insert("image".into(), Value::String(image.clone()));
    }
    serde_saphyr::to_string(&doc).map_err(|e| RenderError::Yaml(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: control-plane\n    image: kindest/node:v1.36.4@sha256:099e\n    extraMounts:\n      - hostPath: ${LAB_APISERVER_DIR}\n        containerPath: /etc/kubernetes/kanidm-lab\n";

    fn node(out: &str) -> Value {
        let v: Value = serde_saphyr::from_str(out).unwrap();
        v["nodes"][0].clone()
    }

    #[test]
    fn pinned_image_is_read_from_the_base_config() {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../kind-configs/kind-1.36.yaml"),
        )
        .unwrap();
        assert!(
            pinned_image(&base)
                .unwrap()
                .starts_with("kindest/node:v1.36.")
        );
        assert_eq!(pinned_image("nodes: []"), None);
        let mut o = ImageOverrides::default();
        o.add_node_image("1.36=local/node:v1").unwrap();
        assert_eq!(
            o.node_image(K8sVersion { minor: 36 }, &base).as_deref(),
            Some("local/node:v1")
        );
        assert!(
            o.node_image(K8sVersion { minor: 33 }, &base)
                .unwrap()
                .starts_with("kindest/node:v1.36.")
        );
    }

    #[test]
    fn node_image_specs_are_checked() {
        let mut o = ImageOverrides::default();
        o.add_node_image("1.36=local/node:v1.36.2").unwrap();
        o.add_node_image("1.33=local/node@sha256:abc").unwrap();
        assert_eq!(o.node[&K8sVersion { minor: 36 }], "local/node:v1.36.2");
        assert!(
            o.add_node_image("1.36=other:x")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            o.add_node_image("kindest/node:v1.36.4")
                .unwrap_err()
                .contains("<minor>=<image>")
        );
        assert!(
            o.add_node_image("1.99=x:y")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            o.add_node_image("1.34=x y")
                .unwrap_err()
                .contains("not an image")
        );
        assert!(o.add_node_image("1.34=--privileged").is_err());
        assert_eq!(o.kanidm_image(), DEFAULT_KANIDM_IMAGE);
    }

    #[test]
    fn node_image_override_replaces_the_pinned_digest() {
        let opts = KindNodeOptions {
            node_image: Some("registry.example/kindest/node:v1.36.2".into()),
            allow_cgroup_v1: false,
        };
        let out = render(BASE, Path::new("/lab"), &[], &opts).unwrap();
        assert_eq!(node(&out)["image"], "registry.example/kindest/node:v1.36.2");
        let pinned = render(BASE, Path::new("/lab"), &[], &KindNodeOptions::default()).unwrap();
        assert_eq!(node(&pinned)["image"], "kindest/node:v1.36.4@sha256:099e");
    }

    #[test]
    fn cgroup_v1_patch_only_for_kubelets_that_refuse_it() {
        let v = |m| K8sVersion { minor: m };
        assert!(KindNodeOptions::for_host(v(36), None, "1\n").allow_cgroup_v1);
        assert!(KindNodeOptions::for_host(v(35), None, "1").allow_cgroup_v1);
        assert!(!KindNodeOptions::for_host(v(34), None, "1").allow_cgroup_v1);
        assert!(!KindNodeOptions::for_host(v(36), None, "2").allow_cgroup_v1);
        let opts = KindNodeOptions::for_host(v(36), None, "1");
        let out = render(BASE, Path::new("/lab"), &["a=b".into()], &opts).unwrap();
        let patches = node(&out)["kubeadmConfigPatches"].clone();
        let kubelet = patches[1].as_str().unwrap();
        let k: Value = serde_saphyr::from_str(kubelet).unwrap();
        assert_eq!(k["kind"], "KubeletConfiguration");
        assert_eq!(k["failCgroupV1"], false);
    }

    #[test]
    fn a_repeated_flag_is_refused_not_dropped() {
        let args = [
            "oidc-required-claim=hd=example.com".to_string(),
            "oidc-required-claim=role=dev".to_string(),
        ];
        let e = render(BASE, Path::new("/lab"), &args, &KindNodeOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("--oidc-required-claim is given more than once"),
            "{e}"
        );
    }
}
