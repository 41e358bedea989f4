//! kind backend: `kind create cluster` with the pinned config for the requested minor.
//!
//! Authentication changes: a structured config is rewritten in the mounted directory
//! (dynamic reload, confirmed by `apiserver_authentication_config_controller_automatic_reloads_total`,
//! then the 10 s token success cache is allowed to expire); switching to or between
//! `--oidc-*` flag sets edits the kube-apiserver static pod manifest inside the node and
//! waits for kubelet to restart it. Kanidm runs as a container in the node's network
//! namespace (see `kanidm::container`), reachable from host and node as https://localhost:<port>.

use super::{AuthSetup, ClusterBackend, LogMark};
use crate::pki::LabPki;
use crate::process::free_port;
use crate::progress::Progress;
use crate::render::K8sVersion;
use crate::render::kind_config::{self, NODE_AUTHN_DIR};
use crate::tools;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

pub struct KindCluster {
    name: String,
    node: String,
    dir: PathBuf,
    host_authn_dir: PathBuf,
    kind: PathBuf,
    kubeconfig: PathBuf,
    url: String,
    pub kanidm_port: u16,
    current: Option<AuthSetup>,
    http: reqwest::Client,
    created: bool,
}

async fn run(cmd: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::process::Command::new(cmd);
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if stdin.is_some() {
        c.stdin(std::process::Stdio::piped());
    }
    let mut child = c
        .spawn()
        .with_context(|| format!("running {}", cmd.display()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed: {}",
            cmd.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn docker() -> PathBuf {
    which::which("docker").unwrap_or_else(|_| PathBuf::from("docker"))
}

impl KindCluster {
    pub async fn create(
        dir: &Path,
        pki: &LabPki,
        v: K8sVersion,
        kind_configs: &Path,
        progress: &Progress,
    ) -> Result<KindCluster> {
        let kind = tools::KIND.require()?;
        let base_path = kind_config::base_config_path(kind_configs, v);
        let base = std::fs::read_to_string(&base_path)
            .with_context(|| format!("no kind config for Kubernetes {v} ({}); supported minors have a file in kind-configs/", base_path.display()))?;
        let host_authn_dir = dir.join("apiserver");
        std::fs::create_dir_all(&host_authn_dir)?;
        std::fs::copy(&pki.ca_cert, host_authn_dir.join("ca.pem"))?;
        // Start with a structured config that has no JWT authenticators (valid, accepts nothing).
        let api = v
            .authn_config_api_version()
            .ok_or_else(|| anyhow!("Kubernetes {v} cannot take --authentication-config"))?;
        std::fs::write(
            host_authn_dir.join("authentication-config.yaml"),
            format!("apiVersion: {api}\nkind: AuthenticationConfiguration\njwt: []\n"),
        )?;
        let kanidm_port = free_port()?;
        let args = vec![format!(
            "authentication-config={NODE_AUTHN_DIR}/authentication-config.yaml"
        )];
        let mut text = kind_config::render(&base, &host_authn_dir, &args)?;
        // Publish Kanidm's port from the node (where the Kanidm container listens).
        let mut doc: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|e| anyhow!("{e}"))?;
        doc["nodes"][0]["extraPortMappings"] = serde_json::json!([{"containerPort": kanidm_port, "hostPort": kanidm_port, "listenAddress": "127.0.0.1", "protocol": "TCP"}]);
        text = serde_saphyr::to_string(&doc).map_err(|e| anyhow!("{e}"))?;
        let cfg_path = dir.join("kind-config.yaml");
        std::fs::write(&cfg_path, &text)?;
        let name = format!("kanidm-lab-{}", std::process::id());
        let kubeconfig = dir.join("admin.kubeconfig");
        progress.step(&format!(
            "kind create cluster --name {name} (Kubernetes {v})"
        ));
        run(
            &kind,
            &[
                "create",
                "cluster",
                "--name",
                &name,
                "--config",
                &cfg_path.to_string_lossy(),
                "--kubeconfig",
                &kubeconfig.to_string_lossy(),
                "--wait",
                "120s",
            ],
            None,
        )
        .await?;
        let node = format!("{name}-control-plane");
        let kc: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&kubeconfig)?)
            .map_err(|e| anyhow!("{e}"))?;
        let url = kc["clusters"][0]["cluster"]["server"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ca_b64 = kc["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap_or_default();
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca_b64)
            .context("kind kubeconfig CA")?;
        let cert_b64 = kc["users"][0]["user"]["client-certificate-data"]
            .as_str()
            .unwrap_or_default();
        let key_b64 = kc["users"][0]["user"]["client-key-data"]
            .as_str()
            .unwrap_or_default();
        let mut ident = base64::engine::general_purpose::STANDARD.decode(cert_b64)?;
        ident.extend(base64::engine::general_purpose::STANDARD.decode(key_b64)?);
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
            .identity(reqwest::Identity::from_pem(&ident)?)
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        // Keep the cluster CA next to the lab so person kubeconfigs can reference it.
        std::fs::write(dir.join("cluster-ca.pem"), &ca)?;
        Ok(KindCluster {
            name,
            node,
            dir: dir.to_path_buf(),
            host_authn_dir,
            kind,
            kubeconfig,
            url,
            kanidm_port,
            current: Some(AuthSetup::Structured {
                config_yaml: String::new(),
            }),
            http,
            created: true,
        })
    }

    pub fn node_container(&self) -> &str {
        &self.node
    }

    async fn reloads(&self) -> u64 {
        let Ok(r) = self.http.get(format!("{}/metrics", self.url)).send().await else {
            return 0;
        };
        successful_reloads(&r.text().await.unwrap_or_default())
    }

    async fn ready(&self) -> bool {
        matches!(self.http.get(format!("{}/readyz", self.url)).send().await, Ok(r) if r.status().is_success())
    }

    /// Run a shell snippet inside the node container.
    async fn node_sh(&self, script: &str) -> Result<String> {
        run(&docker(), &["exec", &self.node, "sh", "-c", script], None).await
    }

    /// The id of the running kube-apiserver container in the node ("" if none).
    async fn apiserver_container(&self) -> String {
        self.node_sh("crictl ps --name kube-apiserver -q | head -1")
            .await
            .unwrap_or_default()
    }

    async fn edit_manifest(&self, flags: &[String]) -> Result<()> {
        let text = run(&docker(), &["exec", &self.node, "cat", MANIFEST], None).await?;
        let out = with_auth_flags(&text, flags)?;
        let before = self.apiserver_container().await;
        run(
            &docker(),
            &[
                "exec",
                "-i",
                &self.node,
                "sh",
                "-c",
                &format!("cat > {MANIFEST}.new && mv {MANIFEST}.new {MANIFEST}"),
            ],
            Some(&out),
        )
        .await?;
        // kubelet notices the manifest and replaces the container: wait for a new one, then /readyz.
        let start = Instant::now();
        loop {
            let now = self.apiserver_container().await;
            if !now.trim().is_empty() && now.trim() != before.trim() && self.ready().await {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(180) {
                bail!(
                    "kube-apiserver did not come back within 180 s after the manifest change; see `docker exec {} crictl logs`",
                    self.node
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn pod_log(&self) -> String {
        self.node_sh(
            "cat /var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log 2>/dev/null",
        )
        .await
        .unwrap_or_default()
    }
}

impl ClusterBackend for KindCluster {
    fn name(&self) -> &'static str {
        "kind"
    }
    fn server_url(&self) -> &str {
        &self.url
    }
    fn admin_kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
    fn ca_path_for_apiserver(&self) -> String {
        format!("{NODE_AUTHN_DIR}/ca.pem")
    }
    fn server_ca_file(&self) -> PathBuf {
        self.dir.join("cluster-ca.pem")
    }
    fn kanidm_placement(&self) -> super::KanidmPlacement {
        super::KanidmPlacement::ContainerInNode {
            node: self.node.clone(),
            port: self.kanidm_port,
        }
    }

    async fn configure_auth(&mut self, auth: &AuthSetup) -> Result<()> {
        if self.current.as_ref() == Some(auth) {
            return Ok(());
        }
        match auth {
            AuthSetup::Structured { config_yaml } => {
                let was_structured = matches!(self.current, Some(AuthSetup::Structured { .. }));
                let before = self.reloads().await;
                // Overwrite in place inside the mounted directory (fsnotify + 1 min poll).
                std::fs::write(
                    self.host_authn_dir.join("authentication-config.yaml"),
                    config_yaml,
                )?;
                if was_structured {
                    let start = Instant::now();
                    while self.reloads().await <= before {
                        if start.elapsed() > Duration::from_secs(120) {
                            bail!(
                                "the API server did not reload the authentication config within 120 s; see its log"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    // Successful token authentications are cached for 10 s.
                    tokio::time::sleep(Duration::from_secs(10)).await;
                } else {
                    self.edit_manifest(&[format!(
                        "--authentication-config={NODE_AUTHN_DIR}/authentication-config.yaml"
                    )])
                    .await?;
                }
            }
            AuthSetup::Flags(flags) => self.edit_manifest(flags).await?,
        }
        self.current = Some(auth.clone());
        Ok(())
    }

    fn log_mark(&self) -> LogMark {
        // The pod log is read through docker exec; the mark is its length now.
        let len = futures_len(self);
        LogMark {
            file: PathBuf::from(format!("kind:{}", self.node)),
            offset: len,
        }
    }

    fn log_lines_since(&self, mark: &LogMark) -> Vec<String> {
        let text = block(self.pod_log());
        text.get(mark.offset as usize..)
            .unwrap_or("")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn collect_logs(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("kube-apiserver.log"), block(self.pod_log()))?;
        let out = std::process::Command::new(&self.kind)
            .args([
                "export",
                "logs",
                &dir.join("kind").to_string_lossy(),
                "--name",
                &self.name,
            ])
            .output();
        if let Err(e) = out {
            tracing::warn!("kind export logs failed: {e}");
        }
        Ok(())
    }

    async fn server_version(&self) -> Option<String> {
        super::git_version(&self.http, &self.url).await
    }

    async fn shutdown(&mut self) {
        if self.created {
            let _ = run(
                &self.kind,
                &["delete", "cluster", "--name", &self.name],
                None,
            )
            .await;
            self.created = false;
        }
    }
}

/// Sum of `apiserver_authentication_config_controller_automatic_reloads_total{status="success"}`
/// in a Prometheus text exposition.
fn successful_reloads(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_authentication_config_controller_automatic_reloads_total")
                && l.contains("status=\"success\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The kube-apiserver static pod manifest with every `--oidc-*` and
/// `--authentication-config` argument replaced by `flags`.
fn with_auth_flags(manifest: &str, flags: &[String]) -> Result<String> {
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(manifest).map_err(|e| anyhow!("parsing {MANIFEST}: {e}"))?;
    let cmd = doc["spec"]["containers"][0]["command"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("{MANIFEST} has no command list"))?;
    cmd.retain(|a| {
        a.as_str()
            .is_some_and(|s| !s.starts_with("--oidc-") && !s.starts_with("--authentication-config"))
    });
    cmd.extend(flags.iter().map(|f| serde_json::Value::String(f.clone())));
    serde_saphyr::to_string(&doc).map_err(|e| anyhow!("{e}"))
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn futures_len(c: &KindCluster) -> u64 {
    block(c.pod_log()).len() as u64
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        if self.created {
            let _ = std::process::Command::new(&self.kind)
                .args(["delete", "cluster", "--name", &self.name])
                .output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape kubeadm writes (trimmed).
    const MANIFEST_TEXT: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --advertise-address=172.18.0.2\n    - --authentication-config=/etc/kubernetes/kanidm-lab/authentication-config.yaml\n    - --secure-port=6443\n    image: registry.k8s.io/kube-apiserver:v1.36.4\n    name: kube-apiserver\n  hostNetwork: true\n";

    #[test]
    fn switching_to_flags_replaces_the_structured_config() {
        let flags = vec![
            "--oidc-issuer-url=https://localhost:1/oauth2/openid/k8s".to_string(),
            "--oidc-client-id=k8s".into(),
        ];
        let out = with_auth_flags(MANIFEST_TEXT, &flags).unwrap();
        let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        let cmd: Vec<&str> = v["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        assert_eq!(
            cmd,
            [
                "kube-apiserver",
                "--advertise-address=172.18.0.2",
                "--secure-port=6443",
                flags[0].as_str(),
                flags[1].as_str()
            ]
        );
        assert_eq!(v["spec"]["hostNetwork"], true);
        // And back: flags out, structured config in.
        let back = with_auth_flags(&out, &["--authentication-config=/x.yaml".to_string()]).unwrap();
        assert!(!back.contains("--oidc-") && back.contains("--authentication-config=/x.yaml"));
    }

    #[test]
    fn reload_counter_reads_only_successes() {
        let m = "# HELP x\napiserver_authentication_config_controller_automatic_reloads_total{apiserver_id_hash=\"sha256:ab\",status=\"failure\"} 2\napiserver_authentication_config_controller_automatic_reloads_total{apiserver_id_hash=\"sha256:ab\",status=\"success\"} 3\n";
        assert_eq!(successful_reloads(m), 3);
        assert_eq!(successful_reloads(""), 0);
    }
}
