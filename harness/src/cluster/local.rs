//! Local control plane: etcd + kube-apiserver + kube-controller-manager as processes.
//!
//! Changing authentication restarts kube-apiserver (1–3 s to `/readyz` here; a structured
//! config reload takes ~10 s to show). kube-controller-manager runs only until the
//! `view`/`edit`/`admin` roles are aggregated: the rules then live in etcd, and an API server
//! with no watch clients stops in milliseconds instead of its 60 s graceful drain.

use super::kubeconfig::{self, UserAuth};
use super::{AuthSetup, ClusterBackend, LogMark};
use crate::pki::LabPki;
use crate::process::{ManagedProcess, free_port, tail};
use crate::tools;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct LocalControlPlane {
    dir: PathBuf,
    pki: LabPki,
    etcd: Option<ManagedProcess>,
    /// etcd starting in the background (it overlaps with Kanidm and the logins); the API
    /// server's first start waits for it.
    etcd_starting: Option<tokio::task::JoinHandle<Result<(ManagedProcess, String)>>>,
    apiserver: Option<ManagedProcess>,
    kcm: Option<ManagedProcess>,
    apiserver_bin: PathBuf,
    kcm_bin: PathBuf,
    kubectl: PathBuf,
    etcd_url: String,
    port: u16,
    url: String,
    admin_kubeconfig: PathBuf,
    http: reqwest::Client,
    starts: u32,
    current: Option<AuthSetup>,
    roles_aggregated: bool,
    /// Seconds each API server start took to `/readyz`.
    pub ready_times: Vec<Duration>,
}

/// Ports are picked free and bound later by the child, so a concurrent run can take one
/// in between. A lost port shows as the child exiting with "address already in use" (or,
/// for etcd, another etcd answering on it): pick new ports and try again.
const PORT_ATTEMPTS: usize = 3;

fn lost_port(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains("address already in use"))
}

/// An HTTP client that trusts only the lab CA and presents `cert`/`key`.
fn mtls_client(
    pki: &LabPki,
    cert: &Path,
    key: &Path,
    timeout: Duration,
) -> Result<reqwest::Client> {
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(cert)?,
        std::fs::read_to_string(key)?
    );
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?])
        .identity(reqwest::Identity::from_pem(pem.as_bytes())?)
        .no_proxy()
        .timeout(timeout)
        .build()?)
}

/// etcd on loopback over TLS, accepting only clients the lab CA signed (nobody else on the
/// machine can read or write the lab's cluster state), verified to be ours: it answers
/// with our unique member name.
async fn start_etcd(etcd_bin: &Path, dir: &Path, pki: &LabPki) -> Result<(ManagedProcess, String)> {
    let http = mtls_client(
        pki,
        &pki.etcd_client_cert,
        &pki.etcd_client_key,
        Duration::from_secs(2),
    )
    .context("loading the etcd client certificate")?;
    for attempt in 1..=PORT_ATTEMPTS {
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("https://127.0.0.1:{client_port}");
        let peer = format!("https://127.0.0.1:{peer_port}");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("lab-{}-{stamp}", std::process::id());
        let data = dir.join("etcd");
        let _ = std::fs::remove_dir_all(&data);
        let args: Vec<String> = vec![
            format!("--data-dir={}", data.display()),
            format!("--name={name}"),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={name}={peer}"),
            format!("--cert-file={}", pki.etcd_cert.display()),
            format!("--key-file={}", pki.etcd_key.display()),
            format!("--trusted-ca-file={}", pki.ca_cert.display()),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", pki.etcd_cert.display()),
            format!("--peer-key-file={}", pki.etcd_key.display()),
            format!("--peer-trusted-ca-file={}", pki.ca_cert.display()),
            "--peer-client-cert-auth=true".into(),
            "--log-level=warn".into(),
        ];
        let log = dir.join(format!("etcd-{attempt}.log"));
        let mut etcd = ManagedProcess::spawn("etcd", etcd_bin, &args, None, &[], &log)?;
        let (http, url, name, log_ref) = (&http, &etcd_url, &name, &log);
        let ours = crate::wait::until(
            Duration::from_secs(15),
            Duration::from_millis(50),
            || {
                let alive = etcd.ensure_running();
                async move {
                    if alive.is_err() {
                        // Exited: a lost port is worth another try, anything else is not.
                        return if lost_port(log_ref) {
                            Ok(Some(false))
                        } else {
                            alive.map(|_| None)
                        };
                    }
                    let members: Option<serde_json::Value> = match http
                        .post(format!("{url}/v3/cluster/member/list"))
                        .body("{}")
                        .send()
                        .await
                    {
                        Ok(r) => r.json().await.ok(),
                        Err(_) => None,
                    };
                    let names: Vec<String> = members
                        .iter()
                        .flat_map(|m| m["members"].as_array().cloned().unwrap_or_default())
                        .filter_map(|m| m["name"].as_str().map(str::to_string))
                        .collect();
                    Ok(match names.is_empty() {
                        true => None,
                        // Another run's etcd holds the port.
                        false => Some(names.iter().any(|n| n == name)),
                    })
                }
            },
            |after| {
                anyhow::anyhow!(
                    "etcd did not answer within {} s; see {}",
                    after.as_secs(),
                    log.display()
                )
            },
        )
        .await?;
        if ours {
            return Ok((etcd, etcd_url));
        }
        etcd.stop(Duration::from_secs(2)).await;
        tracing::warn!("etcd lost port {client_port} to another process; trying new ports");
    }
    anyhow::bail!(
        "etcd could not get a free port in {PORT_ATTEMPTS} attempts (another run keeps taking them)"
    )
}

impl LocalControlPlane {
    /// Start etcd; the API server starts at the first [`ClusterBackend::configure_auth`].
    pub async fn start(
        dir: &Path,
        pki: &LabPki,
        bins: &tools::ControlPlaneBins,
    ) -> Result<LocalControlPlane> {
        let etcd_bin = tools::ETCD.require()?;
        let apiserver_bin = bins.apiserver.clone();
        let kcm_bin = bins.controller_manager.clone();
        std::fs::create_dir_all(dir.join("apiserver"))?;
        let etcd_starting = {
            let (dir, pki) = (dir.to_path_buf(), pki.clone());
            tokio::spawn(async move { start_etcd(&etcd_bin, &dir, &pki).await })
        };
        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        kubeconfig::write(
            &admin_kubeconfig,
            &url,
            &pki.ca_cert,
            "lab-admin",
            UserAuth::ClientCert {
                cert: &pki.admin_cert,
                key: &pki.admin_key,
            },
        )?;
        let http = mtls_client(pki, &pki.admin_cert, &pki.admin_key, Duration::from_secs(5))
            .context("loading the admin client certificate")?;
        Ok(LocalControlPlane {
            dir: dir.to_path_buf(),
            pki: pki.clone(),
            etcd: None,
            etcd_starting: Some(etcd_starting),
            apiserver: None,
            kcm: None,
            apiserver_bin,
            kcm_bin,
            kubectl: bins.kubectl.clone(),
            etcd_url: String::new(),
            port,
            url,
            admin_kubeconfig,
            http,
            starts: 0,
            current: None,
            roles_aggregated: false,
            ready_times: Vec::new(),
        })
    }

    fn apiserver_log(&self) -> PathBuf {
        self.dir.join(format!("kube-apiserver-{}.log", self.starts))
    }

    fn apiserver_args(&self, auth: &AuthSetup) -> Result<Vec<String>> {
        let p = &self.pki;
        let mut args = vec![
            format!("--etcd-servers={}", self.etcd_url),
            format!("--etcd-cafile={}", p.ca_cert.display()),
            format!("--etcd-certfile={}", p.etcd_client_cert.display()),
            format!("--etcd-keyfile={}", p.etcd_client_key.display()),
            format!("--cert-dir={}", self.dir.join("apiserver").display()),
            format!("--secure-port={}", self.port),
            "--bind-address=127.0.0.1".into(),
            format!("--tls-cert-file={}", p.apiserver_cert.display()),
            format!("--tls-private-key-file={}", p.apiserver_key.display()),
            format!("--client-ca-file={}", p.ca_cert.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p.sa_pub.display()),
            format!("--service-account-signing-key-file={}", p.sa_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--enable-priority-and-fairness=false".into(),
        ];
        match auth {
            AuthSetup::Structured { config_yaml } => {
                let file = self
                    .dir
                    .join("apiserver")
                    .join("authentication-config.yaml");
                std::fs::write(&file, config_yaml)?;
                args.push(format!("--authentication-config={}", file.display()));
            }
            AuthSetup::Flags(flags) => args.extend(flags.iter().cloned()),
        }
        Ok(args)
    }

    async fn ready(&self) -> bool {
        match self.http.get(format!("{}/readyz", self.url)).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// etcd, once it answers as ours (the first API server start waits for it here).
    async fn ensure_etcd(&mut self) -> Result<()> {
        if let Some(h) = self.etcd_starting.take() {
            let (etcd, url) = h
                .await
                .map_err(|e| anyhow::anyhow!("the etcd start-up task failed: {e}"))??;
            self.etcd = Some(etcd);
            self.etcd_url = url;
        }
        Ok(())
    }

    /// Start kube-apiserver; if another process took its port in the meantime, on a new port.
    async fn start_apiserver(&mut self, auth: &AuthSetup) -> Result<()> {
        self.ensure_etcd().await?;
        for attempt in 1..=PORT_ATTEMPTS {
            match self.try_start_apiserver(auth).await {
                Err(e) if attempt < PORT_ATTEMPTS && lost_port(&self.apiserver_log()) => {
                    tracing::warn!(
                        "kube-apiserver lost port {}: {e:#}; trying a new port",
                        self.port
                    );
                    self.move_to_port(free_port()?)?;
                }
                other => return other,
            }
        }
        Ok(())
    }

    fn move_to_port(&mut self, port: u16) -> Result<()> {
        self.port = port;
        self.url = format!("https://127.0.0.1:{port}");
        kubeconfig::write(
            &self.admin_kubeconfig,
            &self.url,
            &self.pki.ca_cert,
            "lab-admin",
            UserAuth::ClientCert {
                cert: &self.pki.admin_cert,
                key: &self.pki.admin_key,
            },
        )
    }

    async fn try_start_apiserver(&mut self, auth: &AuthSetup) -> Result<()> {
        self.starts += 1;
        let args = self.apiserver_args(auth)?;
        let log = self.apiserver_log();
        let mut proc = ManagedProcess::spawn(
            "kube-apiserver",
            &self.apiserver_bin,
            &args,
            None,
            &[],
            &log,
        )?;
        let start = Instant::now();
        let this = &*self;
        crate::wait::until(
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                let alive = proc.ensure_running().map_err(|e| {
                    let hint = if std::fs::read_to_string(&log).unwrap_or_default().contains("authentication") {
                        "\n  help: the API server rejected the authentication settings; run `cargo xtask render <scenario>` to see them"
                    } else {
                        ""
                    };
                    anyhow::anyhow!("{e}{hint}")
                });
                async move {
                    alive?;
                    Ok(this.ready().await.then_some(()))
                }
            },
            |after| {
                anyhow::anyhow!(
                    "kube-apiserver not ready after {} s; log tail:\n{}",
                    after.as_secs(),
                    tail(&log, 20)
                )
            },
        )
        .await?;
        self.ready_times.push(start.elapsed());
        self.apiserver = Some(proc);
        Ok(())
    }

    /// Is the built-in `view` role aggregated (has rules)?
    /// Rule counts of `view`, `edit` and `admin` (which kube-controller-manager aggregates).
    async fn aggregated_rule_counts(&self) -> Option<[usize; 3]> {
        let mut out = [0; 3];
        for (slot, role) in out.iter_mut().zip(["view", "edit", "admin"]) {
            let url = format!(
                "{}/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}",
                self.url
            );
            let v: serde_json::Value = self.http.get(url).send().await.ok()?.json().await.ok()?;
            *slot = v["rules"].as_array().map(Vec::len).unwrap_or(0);
        }
        Some(out)
    }

    /// All three roles have rules, each includes the one below it, and nothing changed
    /// since the previous look (the controller writes them one after another).
    fn aggregation_settled(prev: Option<[usize; 3]>, now: Option<[usize; 3]>) -> bool {
        match (prev, now) {
            (Some(p), Some(n)) => p == n && n[0] > 0 && n[1] >= n[0] && n[2] >= n[1],
            _ => false,
        }
    }

    async fn ensure_roles_aggregated(&mut self) -> Result<()> {
        if self.roles_aggregated {
            // Aggregated rules live in etcd; check they survived the restart.
            if self
                .aggregated_rule_counts()
                .await
                .is_some_and(|c| c.iter().all(|n| *n > 0))
            {
                return Ok(());
            }
            self.roles_aggregated = false;
        }
        let args = vec![
            format!("--kubeconfig={}", self.admin_kubeconfig.display()),
            "--controllers=clusterrole-aggregation".into(),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ];
        let log = self.dir.join("kube-controller-manager.log");
        let mut kcm = ManagedProcess::spawn(
            "kube-controller-manager",
            &self.kcm_bin,
            &args,
            None,
            &[],
            &log,
        )?;
        let prev = std::cell::Cell::new(None);
        let this = &*self;
        crate::wait::until(
            Duration::from_secs(60),
            Duration::from_millis(300),
            || {
                let alive = kcm.ensure_running();
                let prev = &prev;
                async move {
                    alive?;
                    let now = this.aggregated_rule_counts().await;
                    let settled = Self::aggregation_settled(prev.replace(now), now);
                    Ok(settled.then_some(()))
                }
            },
            |after| {
                anyhow::anyhow!(
                    "the view/edit/admin roles were not aggregated within {} s; see {}",
                    after.as_secs(),
                    log.display()
                )
            },
        )
        .await?;
        // Stop it: it holds watches that make the next API server stop take 60 s.
        kcm.stop(Duration::from_secs(5)).await;
        self.kcm = None;
        self.roles_aggregated = true;
        Ok(())
    }
}

impl ClusterBackend for LocalControlPlane {
    fn name(&self) -> &'static str {
        "local"
    }
    fn server_url(&self) -> &str {
        &self.url
    }
    fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }
    fn kubectl(&self) -> &Path {
        &self.kubectl
    }
    fn forget_auth(&mut self) {
        self.current = None;
    }
    fn ca_path_for_apiserver(&self) -> String {
        self.pki.ca_cert.to_string_lossy().into_owned()
    }

    async fn configure_auth(&mut self, auth: &AuthSetup) -> Result<()> {
        if self.current.as_ref() == Some(auth) && self.apiserver.is_some() {
            return Ok(());
        }
        if let Some(mut old) = self.apiserver.take() {
            // No watch clients are connected (kube-controller-manager is stopped), so this is quick.
            old.stop(Duration::from_secs(2)).await;
        }
        self.start_apiserver(auth).await?;
        self.current = Some(auth.clone());
        self.ensure_roles_aggregated().await
    }

    fn server_ca_file(&self) -> PathBuf {
        self.pki.ca_cert.clone()
    }

    async fn log_mark(&self) -> LogMark {
        let file = self.apiserver_log();
        let offset = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        LogMark { file, offset }
    }

    async fn collect_logs(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(&self.dir)? {
            let p = entry?.path();
            if p.extension().is_some_and(|e| e == "log")
                && let Some(name) = p.file_name()
            {
                std::fs::copy(&p, dir.join(name))?;
            }
        }
        Ok(())
    }

    async fn server_version(&self) -> Option<String> {
        super::git_version(&self.http, &self.url).await
    }

    async fn shutdown(&mut self) {
        if let Some(h) = self.etcd_starting.take() {
            // Dropping the task drops its etcd process (killed with its group).
            h.abort();
            let _ = h.await;
        }
        if let Some(mut k) = self.kcm.take() {
            k.stop(Duration::from_secs(2)).await;
        }
        if let Some(mut a) = self.apiserver.take() {
            a.stop(Duration::from_secs(2)).await;
        }
        if let Some(mut e) = self.etcd.take() {
            e.stop(Duration::from_secs(2)).await;
        }
    }
}
