//! Editing kubeadm's kube-apiserver static pod manifest (pure): the authentication flags,
//! and a marker that makes kubelet restart the pod when only a mounted file changed.

use anyhow::{Result, anyhow};

pub const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
/// Pod annotation carrying the hash of the config the pod must start with.
pub const CONFIG_ANNOTATION: &str = "kanidm-k8s-lab/authentication-config";

/// The two names the static pod takes in turn. kubelet starts a static pod only once the
/// pod of the same name before it is wholly torn down, and looks again 10–15 s later
/// (its pod workers' back-off, not configurable): measured, the new container came
/// 12.6–16.4 s after the manifest change. A pod of another name starts at once.
pub const POD_NAMES: [&str; 2] = ["kube-apiserver", "kube-apiserver-lab"];

/// The manifest with every `--oidc-*` and `--authentication-config` argument replaced by
/// `flags`, the pod annotated with `marker` (kubelet restarts the pod whenever the
/// manifest text changes, so a new marker forces a fresh API server on the same flags) and
/// named with the other of [`POD_NAMES`].
pub fn with_auth(manifest: &str, flags: &[String], marker: &str) -> Result<String> {
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(manifest).map_err(|e| anyhow!("parsing {MANIFEST}: {e}"))?;
    let next_name = match doc["metadata"]["name"].as_str() {
        Some(n) if n == POD_NAMES[0] => POD_NAMES[1],
        _ => POD_NAMES[0],
    };
    let cmd = doc["spec"]["containers"][0]["command"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("{MANIFEST} has no command list"))?;
    cmd.retain(|a| {
        a.as_str()
            .is_some_and(|s| !s.starts_with("--oidc-") && !s.starts_with("--authentication-config"))
    });
    cmd.extend(flags.iter().map(|f| serde_json::Value::String(f.clone())));
    let meta = doc["metadata"]
        .as_object_mut()
        .ok_or_else(|| anyhow!("{MANIFEST} has no metadata"))?;
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    if !ann.is_object() {
        *ann = serde_json::json!({});
    }
    ann[CONFIG_ANNOTATION] = serde_json::Value::String(marker.to_string());
    meta.insert("name".into(), serde_json::Value::String(next_name.into()));
    serde_saphyr::to_string(&doc).map_err(|e| anyhow!("{e}"))
}

/// Whether a running container's arguments (from `crictl inspect`) carry exactly these
/// authentication flags: the proof that kubelet started it from our manifest.
pub fn runs_flags(inspect_json: &str, flags: &[String]) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(inspect_json) else {
        return false;
    };
    let candidates = [
        &v["info"]["runtimeSpec"]["process"]["args"],
        &v["info"]["config"]["command"],
        &v["info"]["config"]["args"],
    ];
    candidates.iter().any(|a| {
        let Some(list) = a.as_array() else {
            return false;
        };
        let args: Vec<&str> = list.iter().filter_map(|x| x.as_str()).collect();
        let auth: Vec<&str> = args
            .iter()
            .copied()
            .filter(|s| s.starts_with("--oidc-") || s.starts_with("--authentication-config"))
            .collect();
        !args.is_empty()
            && auth.len() == flags.len()
            && flags.iter().all(|f| auth.contains(&f.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape kubeadm writes (trimmed).
    const MANIFEST_TEXT: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --advertise-address=172.18.0.2\n    - --authentication-config=/etc/kubernetes/kanidm-lab/authentication-config.yaml\n    - --secure-port=6443\n    image: registry.k8s.io/kube-apiserver:v1.36.4\n    name: kube-apiserver\n  hostNetwork: true\n";

    fn command(text: &str) -> Vec<String> {
        let v: serde_json::Value = serde_saphyr::from_str(text).unwrap();
        v["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn switching_to_flags_replaces_the_structured_config() {
        let flags = vec![
            "--oidc-issuer-url=https://localhost:1/oauth2/openid/k8s".to_string(),
            "--oidc-client-id=k8s".into(),
        ];
        let out = with_auth(MANIFEST_TEXT, &flags, "1").unwrap();
        assert_eq!(
            command(&out),
            [
                "kube-apiserver",
                "--advertise-address=172.18.0.2",
                "--secure-port=6443",
                flags[0].as_str(),
                flags[1].as_str()
            ]
        );
        let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(v["spec"]["hostNetwork"], true);
        assert_eq!(v["metadata"]["annotations"][CONFIG_ANNOTATION], "1");
        // And back: flags out, structured config in.
        let back = with_auth(&out, &["--authentication-config=/x.yaml".to_string()], "2").unwrap();
        assert!(!back.contains("--oidc-") && back.contains("--authentication-config=/x.yaml"));
    }

    #[test]
    fn a_new_marker_alone_changes_the_manifest() {
        let flags = vec![
            "--authentication-config=/etc/kubernetes/kanidm-lab/authentication-config.yaml"
                .to_string(),
        ];
        let a = with_auth(MANIFEST_TEXT, &flags, "sha256:aa").unwrap();
        let b = with_auth(&a, &flags, "sha256:bb").unwrap();
        assert_ne!(a, b);
        assert_eq!(command(&a), command(&b));
    }

    #[test]
    fn each_edit_renames_the_pod_so_kubelet_starts_it_at_once() {
        let name = |text: &str| {
            let v: serde_json::Value = serde_saphyr::from_str(text).unwrap();
            v["metadata"]["name"].as_str().unwrap().to_string()
        };
        let flags = vec!["--authentication-config=/a.yaml".to_string()];
        assert_eq!(name(MANIFEST_TEXT), "kube-apiserver");
        let a = with_auth(MANIFEST_TEXT, &flags, "1").unwrap();
        assert_eq!(name(&a), "kube-apiserver-lab");
        let b = with_auth(&a, &flags, "1").unwrap();
        assert_eq!(name(&b), "kube-apiserver");
        assert_eq!(with_auth(&b, &flags, "1").unwrap(), a);
        // Whatever the pod was called, the next one has one of the two names.
        let odd = MANIFEST_TEXT.replace(
            "name: kube-apiserver\n  namespace",
            "name: other\n  namespace",
        );
        assert_eq!(
            name(&with_auth(&odd, &flags, "1").unwrap()),
            "kube-apiserver"
        );
    }

    #[test]
    fn container_args_prove_which_flags_run() {
        let flags = vec![
            "--oidc-issuer-url=https://x".to_string(),
            "--oidc-client-id=k8s".into(),
        ];
        let inspect = serde_json::json!({"info": {"runtimeSpec": {"process": {"args": [
            "kube-apiserver", "--secure-port=6443", "--oidc-issuer-url=https://x", "--oidc-client-id=k8s"
        ]}}}})
        .to_string();
        assert!(runs_flags(&inspect, &flags));
        assert!(!runs_flags(&inspect, &flags[..1]));
        let old = serde_json::json!({"info": {"runtimeSpec": {"process": {"args": [
            "kube-apiserver", "--authentication-config=/a.yaml"
        ]}}}})
        .to_string();
        assert!(!runs_flags(&old, &flags));
        assert!(!runs_flags("not json", &flags));
    }
}
