//! kind backend: `kind create cluster` with the pinned config for the requested minor.
//!
//! Authentication changes: a structured config is rewritten in the mounted directory and
//! reloaded in place when its JWT authenticators can initialise (confirmed by the API
//! server's own metrics: the running config's hash, or the reload counters). A config that
//! cannot initialise (untrusted CA, issuer mismatch — what several scenarios test) is never
//! reloaded by the API server, so the static pod is restarted on the new file instead.
//! `--oidc-*` flags are set by editing the kube-apiserver static pod manifest in the node.
//! Every restart is verified: a new container whose arguments are exactly ours.
//! Kanidm runs as a container in the node's network namespace (see `kanidm::container`),
//! reachable from host and node as https://localhost:<port>.

use super::apiserver_manifest::{self as manifest, MANIFEST};
use super::apiserver_metrics::{self as metrics, AuthConfigMetrics, ReloadVerdict};
use super::{AuthSetup, ClusterBackend, LogMark};
use crate::pki::LabPki;
use crate::progress::Progress;
use crate::render::K8sVersion;
use crate::render::kind_config::{self, KindNodeOptions, NODE_AUTHN_DIR};
use crate::tools;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where kube-apiserver's container logs are inside the node.
const POD_LOGS: &str = "/var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log";
/// How long a static pod restart may take before we give up.
const RESTART_DEADLINE: Duration = Duration::from_secs(180);
/// The API server gives a reload one minute to initialise, then counts a failure.
const RELOAD_DEADLINE: Duration = Duration::from_secs(75);
/// Where a restart puts the old manifest, out of kubelet's sight, while the old pod goes.
const STOPPED_MANIFEST: &str = "/etc/kubernetes/kube-apiserver.yaml.stopped";
/// Grace we give the old kube-apiserver container once its manifest is gone.
/// kubeadm's pod has the default 30 s and kube-apiserver drains watches for all of it
/// (measured: the old container exits at 30.3 s, the new one answers `/readyz` at 42 s);
/// nothing of the lab needs that drain.
const OLD_CONTAINER_GRACE_SECS: &str = "0";

/// kind clusters this process created so far (names them apart when cells run side by side).
static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Everything the user chooses about the kind backend.
#[derive(Debug, Clone, Default)]
pub struct KindSettings {
    pub configs: PathBuf,
    pub images: kind_config::ImageOverrides,
}

pub struct KindCluster {
    name: String,
    node: String,
    dir: PathBuf,
    host_authn_dir: PathBuf,
    kind: PathBuf,
    kubeconfig: PathBuf,
    url: String,
    pub kanidm_port: u16,
    kubectl: PathBuf,
    current: Option<AuthSetup>,
    reloaded_in_place: bool,
    restarts: u32,
    http: reqwest::Client,
    guard: ClusterGuard,
    /// Phase timings of cluster creation, reloads and restarts (for `cargo xtask bench`).
    pub timings: Vec<(String, Duration)>,
    /// What was adapted to this host (said once in the output).
    pub notes: Vec<String>,
}

/// Deletes the kind cluster when dropped, unless disarmed: an interrupted `kind create`
/// (Ctrl-C, an error, a panic) leaves no node container behind.
struct ClusterGuard {
    kind: PathBuf,
    name: String,
    armed: bool,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = std::process::Command::new(&self.kind)
            .args(["delete", "cluster", "--name", &self.name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // An interrupted `kind create` may have asked Docker for the node container just
        // before it died: Docker still creates it, after the delete above. Remove what
        // carries the cluster's label until nothing has for a moment (at most 20 s).
        let filter = format!("label=io.x-k8s.kind.cluster={}", self.name);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut quiet_since = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            let ids = std::process::Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .stderr(std::process::Stdio::null())
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                if quiet_since.elapsed() >= Duration::from_secs(3) {
                    break;
                }
            } else {
                quiet_since = std::time::Instant::now();
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Run a command with a deadline; the child is killed if we are dropped or time out.
async fn run(cmd: &Path, args: &[&str], stdin: Option<&str>, deadline: Duration) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::process::Command::new(cmd);
    crate::process::die_with_parent(c.as_std_mut());
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if stdin.is_some() {
        c.stdin(std::process::Stdio::piped());
    }
    let mut child = c
        .spawn()
        .with_context(|| format!("running {}", cmd.display()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
    }
    let out = tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow!(
                "`{} {}` did not finish within {} s",
                cmd.display(),
                args.join(" "),
                deadline.as_secs()
            )
        })??;
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

const QUICK: Duration = Duration::from_secs(30);

/// The Docker engine's cgroup version ("1" or "2"), or a clear error when there is no engine.
pub async fn docker_cgroup_version() -> Result<String> {
    which::which("docker").map_err(|_| {
        anyhow!("docker not found\n  help: the kind backend needs a Docker engine (Debian: `apt-get install docker.io`)")
    })?;
    let v = run(&docker(), &["info", "--format", "{{.CgroupVersion}}"], None, QUICK)
        .await
        .map_err(|e| anyhow!("{e:#}\n  help: start the Docker engine (`sudo systemctl start docker`, or `dockerd &`) and check `docker info`"))?;
    Ok(v.trim().to_string())
}

/// Is `image` in the local Docker engine?
pub async fn image_present(image: &str) -> bool {
    run(
        &docker(),
        &["image", "inspect", "--format", "{{.Id}}", image],
        None,
        QUICK,
    )
    .await
    .is_ok()
}

/// `image` present locally, pulled if it is not; otherwise an error that says what to do.
pub async fn ensure_image(image: &str, what: &str, flag: &str) -> Result<()> {
    if image_present(image).await {
        return Ok(());
    }
    run(&docker(), &["pull", image], None, Duration::from_secs(600))
        .await
        .map(|_| ())
        .map_err(|e| {
            anyhow!(
                "the {what} image {image} is not in Docker and could not be pulled: {e:#}\n  help: `docker pull {image}` where a registry is reachable (then `docker save`/`docker load` it here), or pass a local image with {flag}"
            )
        })
}

/// The lab's `apiserver/` directory (CA + an empty structured config) and the kind config:
/// the pinned base, our auth flags and node options, Kanidm's port published on loopback.
fn write_config(
    dir: &Path,
    pki: &LabPki,
    v: K8sVersion,
    base: &str,
    node_opts: &KindNodeOptions,
) -> Result<(PathBuf, PathBuf, u16)> {
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
    let kanidm_port = crate::process::free_port_below_ephemeral()?;
    let args = vec![format!(
        "authentication-config={NODE_AUTHN_DIR}/authentication-config.yaml"
    )];
    let mut text = kind_config::render(base, &host_authn_dir, &args, node_opts)?;
    // Publish Kanidm's port from the node (where the Kanidm container listens).
    let mut doc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| anyhow!("{e}"))?;
    doc["nodes"][0]["extraPortMappings"] = serde_json::json!([{"containerPort": kanidm_port, "hostPort": kanidm_port, "listenAddress": "127.0.0.1", "protocol": "TCP"}]);
    text = serde_saphyr::to_string(&doc).map_err(|e| anyhow!("{e}"))?;
    let cfg_path = dir.join("kind-config.yaml");
    std::fs::write(&cfg_path, &text)?;
    Ok((cfg_path, host_authn_dir, kanidm_port))
}

/// `kind create cluster` with our config and a deadline; returns how long it took.
async fn kind_create(
    kind: &Path,
    name: &str,
    cfg_path: &Path,
    kubeconfig: &Path,
) -> Result<Duration> {
    let t_create = Instant::now();
    run(
        kind,
        &[
            "create",
            "cluster",
            "--name",
            name,
            "--config",
            &cfg_path.to_string_lossy(),
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--wait",
            "120s",
        ],
        None,
        Duration::from_secs(300),
    )
    .await
    .map_err(|e| anyhow!("{e:#}\n  help: `cargo xtask doctor` checks Docker, kind and the images; the node's logs are in `kind export logs` (the cluster is deleted now)"))?;
    Ok(t_create.elapsed())
}

/// The API server URL, its CA and an HTTP client with the admin identity, from kind's kubeconfig.
fn admin_access(kubeconfig: &Path) -> Result<(String, Vec<u8>, reqwest::Client)> {
    let kc: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig)?)
        .map_err(|e| anyhow!("{e}"))?;
    let field = |v: &serde_json::Value, what: &str| -> Result<String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("kind's kubeconfig has no {what}"))
    };
    let url = field(&kc["clusters"][0]["cluster"]["server"], "server URL")?;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ca = b64
        .decode(field(
            &kc["clusters"][0]["cluster"]["certificate-authority-data"],
            "CA",
        )?)
        .context("kind kubeconfig CA")?;
    let mut ident = b64.decode(field(
        &kc["users"][0]["user"]["client-certificate-data"],
        "client certificate",
    )?)?;
    ident.extend(b64.decode(field(
        &kc["users"][0]["user"]["client-key-data"],
        "client key",
    )?)?);
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .identity(reqwest::Identity::from_pem(&ident)?)
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    Ok((url, ca, http))
}

impl KindCluster {
    pub async fn create(
        dir: &Path,
        pki: &LabPki,
        v: K8sVersion,
        settings: &KindSettings,
        progress: &Progress,
    ) -> Result<KindCluster> {
        let t0 = Instant::now();
        let kind = tools::KIND.require()?;
        let kubectl = tools::KUBECTL.require()?;
        let cgroup = docker_cgroup_version().await?;
        let base_path = kind_config::base_config_path(&settings.configs, v);
        let base = std::fs::read_to_string(&base_path)
            .with_context(|| format!("no kind config for Kubernetes {v} ({}); supported minors have a file in kind-configs/", base_path.display()))?;
        let node_opts =
            KindNodeOptions::for_host(v, settings.images.node.get(&v).cloned(), &cgroup);
        let mut notes = Vec::new();
        if node_opts.allow_cgroup_v1 {
            notes.push(format!(
                "this Docker host runs cgroup v1: added `failCgroupV1: false` to kubelet (Kubernetes {v} refuses cgroup v1 otherwise)"
            ));
        }
        let node_image = settings.images.node_image(v, &base).unwrap_or_default();
        // Fail before creating anything when an image is missing (the run checks the
        // Kanidm images before it gets here).
        let flag = format!("--node-image {v}=<image> (or LAB_NODE_IMAGES)");
        ensure_image(&node_image, "kind node", &flag).await?;

        let (cfg_path, host_authn_dir, kanidm_port) = write_config(dir, pki, v, &base, &node_opts)?;
        // One cluster per matrix cell, several at once: the harness's pid, then a number.
        let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = match n {
            0 => format!("kanidm-lab-{}", std::process::id()),
            n => format!("kanidm-lab-{}-{n}", std::process::id()),
        };
        let kubeconfig = dir.join("admin.kubeconfig");
        progress.step(&format!(
            "kind create cluster --name {name} (Kubernetes {v}, {node_image})"
        ));
        let guard = ClusterGuard {
            kind: kind.clone(),
            name: name.clone(),
            armed: true,
        };
        let create_time = kind_create(&kind, &name, &cfg_path, &kubeconfig).await?;
        let node = format!("{name}-control-plane");
        let (url, ca, http) = admin_access(&kubeconfig)?;
        // Keep the cluster CA next to the lab so person kubeconfigs can reference it.
        std::fs::write(dir.join("cluster-ca.pem"), &ca)?;
        let mut me = KindCluster {
            name,
            node,
            dir: dir.to_path_buf(),
            host_authn_dir,
            kind,
            kubeconfig,
            url,
            kanidm_port,
            kubectl,
            current: Some(AuthSetup::Structured {
                config_yaml: String::new(),
            }),
            reloaded_in_place: false,
            restarts: 0,
            http,
            guard,
            timings: vec![("kind: kind create cluster".into(), create_time)],
            notes,
        };
        me.timings.push((
            "kind: cluster ready (images checked, created)".into(),
            t0.elapsed(),
        ));
        Ok(me)
    }

    pub fn node_container(&self) -> &str {
        &self.node
    }

    pub fn cluster_name(&self) -> &str {
        &self.name
    }

    async fn auth_metrics(&self) -> Option<AuthConfigMetrics> {
        let r = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        Some(metrics::parse(&r.text().await.ok()?))
    }

    async fn ready(&self) -> bool {
        matches!(self.http.get(format!("{}/readyz", self.url)).send().await, Ok(r) if r.status().is_success())
    }

    /// Run a shell snippet inside the node container.
    async fn node_sh(&self, script: &str) -> Result<String> {
        run(
            &docker(),
            &["exec", &self.node, "sh", "-c", script],
            None,
            QUICK,
        )
        .await
    }

    /// The id of the running kube-apiserver container in the node ("" if none).
    async fn apiserver_container(&self) -> String {
        self.node_sh("crictl ps --state running --name kube-apiserver -q | head -1")
            .await
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// Restart kube-apiserver with `flags` (and the current contents of the mounted config
    /// file): the old pod's manifest removed and its container stopped without the 30 s
    /// drain, then the edited manifest (the pod renamed, see [`manifest::POD_NAMES`]) and a
    /// new container proven to run our flags and answering `/readyz`.
    async fn restart_apiserver(&mut self, flags: &[String], why: &str) -> Result<()> {
        let t = Instant::now();
        // (A restart cut short leaves only the stopped copy: start from that.)
        let text = self
            .node_sh(&format!(
                "cat {MANIFEST} 2>/dev/null || cat {STOPPED_MANIFEST}"
            ))
            .await?;
        self.restarts += 1;
        let marker = format!(
            "{}-{}",
            self.restarts,
            metrics::config_hash(
                &std::fs::read_to_string(self.host_authn_dir.join("authentication-config.yaml"))
                    .unwrap_or_default()
            )
        );
        let out = manifest::with_auth(&text, flags, &marker)?;
        let before = self.apiserver_container().await;
        let before_pod = self
            .node_sh("crictl pods --state ready --name kube-apiserver -q | head -1")
            .await
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        // The old pod goes first: its manifest out of kubelet's sight, and its container and
        // sandbox stopped now (kubelet would give it its full grace period). The new pod,
        // under the other name, then finds port 6443 free and starts at once.
        let mut script = format!("mv {MANIFEST} {STOPPED_MANIFEST};");
        if !before.is_empty() {
            script.push_str(&format!(
                " crictl stop --timeout {OLD_CONTAINER_GRACE_SECS} {before} >/dev/null 2>&1;"
            ));
        }
        if !before_pod.is_empty() {
            script.push_str(&format!(" crictl stopp {before_pod} >/dev/null 2>&1;"));
        }
        script.push_str(" true");
        self.node_sh(&script).await?;
        let this = &*self;
        crate::wait::until(
            RESTART_DEADLINE.saturating_sub(t.elapsed()),
            Duration::from_millis(100),
            || async { Ok(this.apiserver_container().await.is_empty().then_some(())) },
            |_| {
                anyhow!(
                    "the old kube-apiserver container kept running after its manifest was removed; see `docker exec {} crictl ps -a`",
                    this.node
                )
            },
        )
        .await?;
        run(
            &docker(),
            &[
                "exec",
                "-i",
                &self.node,
                "sh",
                "-c",
                // Written beside the manifests directory, then renamed into it: kubelet only
                // ever sees a whole file.
                &format!("cat > /etc/kubernetes/kube-apiserver.yaml.new && mv /etc/kubernetes/kube-apiserver.yaml.new {MANIFEST}"),
            ],
            Some(&out),
            QUICK,
        )
        .await?;
        let t_stopped = t.elapsed();
        let t_new = std::cell::Cell::new(None);
        let this = &*self;
        crate::wait::until(
            RESTART_DEADLINE.saturating_sub(t.elapsed()),
            Duration::from_millis(250),
            || async {
                let now = this.apiserver_container().await;
                if now.is_empty() || now == before {
                    return Ok(None);
                }
                t_new.set(t_new.get().or(Some(t.elapsed())));
                let inspect = this
                    .node_sh(&format!("crictl inspect -o json {now}"))
                    .await
                    .unwrap_or_default();
                Ok((manifest::runs_flags(&inspect, flags) && this.ready().await).then_some(()))
            },
            |_| {
                anyhow!(
                    "kube-apiserver did not come back with the new flags within {} s after the manifest change; see `docker exec {} crictl ps -a` and its logs",
                    RESTART_DEADLINE.as_secs(),
                    this.node
                )
            },
        )
        .await?;
        let t_new = t_new.get();
        let total = t.elapsed();
        self.timings.push((
            format!(
                "kind: restart ({why}): old stopped {:.1}s, new container {:.1}s, /readyz {:.1}s",
                t_stopped.as_secs_f64(),
                t_new.unwrap_or(total).as_secs_f64(),
                total.as_secs_f64()
            ),
            total,
        ));
        Ok(())
    }

    /// Rewrite the structured config and get the API server onto it: a reload when its
    /// authenticators can initialise, a restart otherwise (or when the reload fails).
    async fn switch_structured(&mut self, config_yaml: &str) -> Result<()> {
        let t = Instant::now();
        let before = self.auth_metrics().await.unwrap_or_default();
        // The API server watches the file (fsnotify, plus a poll every minute).
        self.write_config(config_yaml)?;
        let flag = vec![structured_flag()];
        if let Some(why) = super::jwt_init::config_blocker(config_yaml).await {
            tracing::info!(
                "authenticator cannot initialise ({why}): restarting instead of reloading"
            );
            return self
                .restart_apiserver(&flag, "config cannot initialise")
                .await;
        }
        loop {
            let now = self.auth_metrics().await.unwrap_or_default();
            match metrics::judge_reload(&before, &now, config_yaml) {
                ReloadVerdict::Applied => break,
                ReloadVerdict::Failed => {
                    return self.restart_apiserver(&flag, "reload failed").await;
                }
                ReloadVerdict::Pending if t.elapsed() > RELOAD_DEADLINE => {
                    return self.restart_apiserver(&flag, "reload not seen").await;
                }
                ReloadVerdict::Pending => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        self.reloaded_in_place = true;
        self.timings
            .push(("kind: structured reload".into(), t.elapsed()));
        Ok(())
    }

    /// Replace the mounted structured config in one step (a new file renamed over the old
    /// one). A plain rewrite is truncate-then-write, and the API server's file watch can read
    /// the empty file in between: it counts a failed reload, then a successful one.
    fn write_config(&self, config_yaml: &str) -> Result<()> {
        let tmp = self.host_authn_dir.join(".authentication-config.yaml.new");
        std::fs::write(&tmp, config_yaml)?;
        std::fs::rename(&tmp, self.host_authn_dir.join("authentication-config.yaml"))?;
        Ok(())
    }

    /// The log file of the running kube-apiserver container (newest file), in the node.
    async fn current_log_file(&self) -> String {
        self.node_sh(&format!("ls -t {POD_LOGS} 2>/dev/null | head -1"))
            .await
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// A program run in the node without a shell (arguments are passed as they are).
    async fn node_exec(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["exec", self.node.as_str()];
        all.extend_from_slice(args);
        run(&docker(), &all, None, QUICK).await
    }

    async fn read_log(&self, file: &str, offset: u64) -> String {
        if file.is_empty() {
            return String::new();
        }
        self.node_exec(&["tail", "-c", &format!("+{}", offset + 1), file])
            .await
            .unwrap_or_default()
    }

    async fn log_len(&self, file: &str) -> u64 {
        if file.is_empty() {
            return 0;
        }
        self.node_exec(&["stat", "-c", "%s", file])
            .await
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn structured_flag() -> String {
    format!("--authentication-config={NODE_AUTHN_DIR}/authentication-config.yaml")
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
    fn kubectl(&self) -> &Path {
        &self.kubectl
    }
    fn forget_auth(&mut self) {
        self.current = None;
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
        self.reloaded_in_place = false;
        let was_structured = matches!(self.current, Some(AuthSetup::Structured { .. }));
        // Never leave `current` claiming a config the API server may not run.
        self.current = None;
        match auth {
            AuthSetup::Structured { config_yaml } if was_structured => {
                self.switch_structured(config_yaml).await?
            }
            AuthSetup::Structured { config_yaml } => {
                self.write_config(config_yaml)?;
                self.restart_apiserver(&[structured_flag()], "flags to structured")
                    .await?
            }
            AuthSetup::Flags(flags) => {
                let why = if was_structured {
                    "structured to flags"
                } else {
                    "flags to flags"
                };
                self.restart_apiserver(flags, why).await?
            }
        }
        self.current = Some(auth.clone());
        Ok(())
    }

    fn reloaded_in_place(&self) -> bool {
        self.reloaded_in_place
    }

    async fn log_mark(&self) -> LogMark {
        // The pod log is read through docker exec: the running container's file and its length.
        let file = self.current_log_file().await;
        let offset = self.log_len(&file).await;
        LogMark {
            file: PathBuf::from(file),
            offset,
        }
    }

    async fn log_lines_since(&self, mark: &LogMark) -> Vec<String> {
        let text = self
            .read_log(&mark.file.to_string_lossy(), mark.offset)
            .await;
        text.lines().map(str::to_string).collect()
    }

    async fn collect_logs(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let all = self
            .node_sh(&format!("cat {POD_LOGS} 2>/dev/null"))
            .await
            .unwrap_or_default();
        std::fs::write(dir.join("kube-apiserver.log"), all)?;
        let export = tokio::process::Command::new(&self.kind)
            .args([
                "export",
                "logs",
                &dir.join("kind").to_string_lossy(),
                "--name",
                &self.name,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(std::time::Duration::from_secs(60), export).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("kind export logs failed: {e}"),
            Err(_) => tracing::warn!("kind export logs did not finish within 60 s"),
        }
        Ok(())
    }

    async fn server_version(&self) -> Option<String> {
        super::git_version(&self.http, &self.url).await
    }

    async fn shutdown(&mut self) {
        if self.guard.armed {
            let t = Instant::now();
            let _ = run(
                &self.kind,
                &["delete", "cluster", "--name", &self.name],
                None,
                Duration::from_secs(120),
            )
            .await;
            self.timings
                .push(("kind: kind delete cluster".into(), t.elapsed()));
            // Drop retries if the delete did not finish.
            self.guard.armed = cluster_listed(&self.kind, &self.name);
        }
    }
}

/// Does `kind get clusters` still list `name`?
fn cluster_listed(kind: &Path, name: &str) -> bool {
    std::process::Command::new(kind)
        .args(["get", "clusters"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == name)
        })
        .unwrap_or(true)
}
