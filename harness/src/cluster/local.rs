//! Local control plane: etcd + kube-apiserver + kube-controller-manager as processes.
//!
//! Changing authentication restarts kube-apiserver (1–3 s to `/readyz` here; a structured
//! config reload takes ~10 s to show). The run may name the configurations coming next
//! ([`ClusterBackend::prepare`]): their kube-apiservers start at once on ports of their own,
//! against the same etcd, and the scenario that needs one adopts it instead of waiting for a
//! restart. kube-controller-manager runs only until the
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
    /// The running API server's log.
    log: PathBuf,
    /// API servers started ahead for configurations the run said come next.
    prepared: Vec<Prepared>,
    /// What the caller will prepare after the configuration being applied
    /// ([`ClusterBackend::will_prepare`]), started early by [`Self::wait_ready_starting_ahead`].
    will_prepare: Vec<AuthSetup>,
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
    /// For each prepared API server a scenario adopted: how long it had run when adopted,
    /// and how long the scenario still waited for its `/readyz`.
    pub adopted: Vec<(Duration, Duration)>,
}

/// A kube-apiserver started ahead of the scenario that needs it, on a port of its own.
struct Prepared {
    auth: AuthSetup,
    proc: ManagedProcess,
    port: u16,
    log: PathBuf,
    spawned: Instant,
}

/// At most this many API servers run ahead of the one serving checks (each ~280 MB).
pub const MAX_PREPARED: usize = 2;

/// Which prepared API servers to keep (indexes into `have`) and which configurations to
/// start, so that the first `limit` distinct wanted configurations other than the running
/// one each have a server, and nothing else runs ahead.
fn plan_prepared(
    running: Option<&AuthSetup>,
    have: &[AuthSetup],
    wanted: &[AuthSetup],
    limit: usize,
) -> (Vec<usize>, Vec<AuthSetup>) {
    let mut chosen: Vec<&AuthSetup> = Vec::new();
    for a in wanted {
        if chosen.len() == limit {
            break;
        }
        if Some(a) != running && !chosen.contains(&a) {
            chosen.push(a);
        }
    }
    let mut keep = Vec::new();
    let mut start = Vec::new();
    for a in chosen {
        match have
            .iter()
            .enumerate()
            .position(|(i, h)| h == a && !keep.contains(&i))
        {
            Some(i) => keep.push(i),
            None => start.push(a.clone()),
        }
    }
    (keep, start)
}

/// How far a starting kube-apiserver is, as `/readyz?verbose` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Readyz {
    /// Not answering, or still starting its storage, informers and controllers.
    Starting,
    /// Only post-start hooks that poll once a second are left (RBAC's bootstrap roles, the
    /// system priority classes): ~1 s with almost no CPU used.
    Warm,
    Ready,
}

/// The post-start hooks that keep a kube-apiserver unready after its start-up work is done.
const POLLING_HOOKS: [&str; 2] = [
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
];

impl Readyz {
    /// From a failing `/readyz?verbose` body (`[-]<check> failed: …` per failing check).
    fn of_failing_checks(body: &str) -> Readyz {
        let failing: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("[-]"))
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        match !failing.is_empty() && failing.iter().all(|f| POLLING_HOOKS.contains(f)) {
            true => Readyz::Warm,
            false => Readyz::Starting,
        }
    }
}

/// `LAB_AHEAD=<n>` overrides [`MAX_PREPARED`] (0: the old one-at-a-time restarts, for
/// paired measurements).
fn ahead_limit() -> usize {
    std::env::var("LAB_AHEAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_PREPARED)
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
            log: dir.join("kube-apiserver-0.log"),
            prepared: Vec::new(),
            will_prepare: Vec::new(),
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
            adopted: Vec::new(),
        })
    }

    /// The arguments of one kube-apiserver; a structured config goes to a file of its own
    /// (`authentication-config-<n>.yaml`): the API server reloads its file when it changes,
    /// so a prepared server must never rewrite the running one's.
    fn apiserver_args(&self, auth: &AuthSetup, port: u16, n: u32) -> Result<Vec<String>> {
        let p = &self.pki;
        let mut args = vec![
            format!("--etcd-servers={}", self.etcd_url),
            format!("--etcd-cafile={}", p.ca_cert.display()),
            format!("--etcd-certfile={}", p.etcd_client_cert.display()),
            format!("--etcd-keyfile={}", p.etcd_client_key.display()),
            format!("--cert-dir={}", self.dir.join("apiserver").display()),
            format!("--secure-port={port}"),
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
                    .join(format!("authentication-config-{n}.yaml"));
                std::fs::write(&file, config_yaml)?;
                args.push(format!("--authentication-config={}", file.display()));
            }
            AuthSetup::Flags(flags) => args.extend(flags.iter().cloned()),
        }
        Ok(args)
    }

    /// Where a starting API server is, from `/readyz?verbose`.
    async fn readyz_at(&self, url: &str) -> Readyz {
        let Ok(r) = self.http.get(format!("{url}/readyz?verbose")).send().await else {
            return Readyz::Starting;
        };
        if r.status().is_success() {
            return Readyz::Ready;
        }
        match r.text().await {
            Ok(body) => Readyz::of_failing_checks(&body),
            Err(_) => Readyz::Starting,
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

    /// Start a kube-apiserver with `auth` on `port`; returns it with its log, not yet ready.
    async fn spawn_apiserver(&mut self, auth: &AuthSetup, port: u16) -> Result<Prepared> {
        self.ensure_etcd().await?;
        self.starts += 1;
        let args = self.apiserver_args(auth, port, self.starts)?;
        let log = self.dir.join(format!("kube-apiserver-{}.log", self.starts));
        let proc = ManagedProcess::spawn(
            "kube-apiserver",
            &self.apiserver_bin,
            &args,
            None,
            &crate::process::go_collector_off(crate::process::APISERVER_HEAP_MIB),
            &log,
        )?;
        Ok(Prepared {
            auth: auth.clone(),
            proc,
            port,
            log,
            spawned: Instant::now(),
        })
    }

    /// Wait until `a` is ready; once its start-up work is done (only the post-start hooks'
    /// polls left, ~1 s of idle CPU), start the API servers announced by
    /// [`ClusterBackend::will_prepare`], so they use that second instead of following.
    async fn wait_ready_starting_ahead(&mut self, a: &mut Prepared) -> Result<()> {
        let wanted = std::mem::take(&mut self.will_prepare);
        if !wanted.is_empty() {
            self.wait_for(a, Readyz::Warm).await?;
            if let Err(e) = self.start_ahead(Some(&a.auth), &wanted).await {
                // Only a head start is lost: `prepare` and each scenario start what they need.
                tracing::warn!("starting API servers ahead failed: {e:#}");
            }
        }
        self.wait_for(a, Readyz::Ready).await
    }

    /// Wait until the API server is at least at `at`; an error if it exits or takes 60 s.
    async fn wait_for(&self, a: &mut Prepared, at: Readyz) -> Result<()> {
        let url = format!("https://127.0.0.1:{}", a.port);
        let log = a.log.clone();
        let proc = &mut a.proc;
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
                let url = &url;
                async move {
                    alive?;
                    Ok((self.readyz_at(url).await >= at).then_some(()))
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
        .await
    }

    /// Start kube-apiserver; if another process took its port in the meantime, on a new port.
    async fn start_apiserver(&mut self, auth: &AuthSetup) -> Result<()> {
        let mut port = self.port;
        for attempt in 1..=PORT_ATTEMPTS {
            let mut a = self.spawn_apiserver(auth, port).await?;
            match self.wait_ready_starting_ahead(&mut a).await {
                Err(e) if attempt < PORT_ATTEMPTS && lost_port(&a.log) => {
                    tracing::warn!("kube-apiserver lost port {port}: {e:#}; trying a new port");
                    port = free_port()?;
                }
                Err(e) => return Err(e),
                Ok(()) => {
                    self.ready_times.push(a.spawned.elapsed());
                    self.serve_from(a)?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Make a ready API server the one checks, logs and the admin kubeconfig go to.
    fn serve_from(&mut self, a: Prepared) -> Result<()> {
        if a.port != self.port {
            self.move_to_port(a.port)?;
        }
        self.log = a.log;
        self.apiserver = Some(a.proc);
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

    /// Adopt the prepared API server for `auth`, if there is one and it becomes ready;
    /// false: there was none, or it failed (the caller starts one the usual way).
    async fn adopt_prepared(&mut self, auth: &AuthSetup) -> Result<bool> {
        let Some(i) = self.prepared.iter().position(|p| &p.auth == auth) else {
            return Ok(false);
        };
        let mut a = self.prepared.remove(i);
        let ran = a.spawned.elapsed();
        let t = Instant::now();
        match self.wait_ready_starting_ahead(&mut a).await {
            Ok(()) => {
                self.adopted.push((ran, t.elapsed()));
                self.serve_from(a)?;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(
                    "a prepared kube-apiserver did not become ready: {e:#}; starting one now"
                );
                a.proc.stop(Duration::from_secs(2)).await;
                Ok(false)
            }
        }
    }

    /// Keep or start API servers ahead so that the first distinct `wanted` configurations
    /// other than `running` each have one (see [`plan_prepared`]); stop the others.
    async fn start_ahead(
        &mut self,
        running: Option<&AuthSetup>,
        wanted: &[AuthSetup],
    ) -> Result<()> {
        let have: Vec<AuthSetup> = self.prepared.iter().map(|p| p.auth.clone()).collect();
        let (keep, start) = plan_prepared(running, &have, wanted, ahead_limit());
        let mut kept = Vec::new();
        for (i, p) in std::mem::take(&mut self.prepared).into_iter().enumerate() {
            match keep.contains(&i) {
                true => kept.push(p),
                false => {
                    let mut p = p;
                    p.proc.stop(Duration::from_secs(2)).await;
                }
            }
        }
        self.prepared = kept;
        for a in start {
            let port = free_port()?;
            let p = self.spawn_apiserver(&a, port).await?;
            self.prepared.push(p);
        }
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
        // 100 ms: three small GETs a look, and the scenario waits on this (the controller
        // writes the three roles within a few hundred milliseconds of its informers' sync).
        crate::wait::until(
            Duration::from_secs(60),
            Duration::from_millis(100),
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
        // Prepared servers started before whatever made the caller want a restart:
        // dropping them kills them.
        self.prepared.clear();
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
        self.current = None;
        if !self.adopt_prepared(auth).await? {
            self.start_apiserver(auth).await?;
        }
        self.current = Some(auth.clone());
        self.ensure_roles_aggregated().await
    }

    async fn prepare(&mut self, wanted: &[AuthSetup]) -> Result<()> {
        self.will_prepare.clear();
        let running = self.current.clone().filter(|_| self.apiserver.is_some());
        self.start_ahead(running.as_ref(), wanted).await
    }

    fn will_prepare(&mut self, wanted: &[AuthSetup]) {
        self.will_prepare = wanted.to_vec();
    }

    async fn discard_prepared(&mut self) {
        for mut p in std::mem::take(&mut self.prepared) {
            p.proc.stop(Duration::from_secs(2)).await;
        }
    }

    fn server_ca_file(&self) -> PathBuf {
        self.pki.ca_cert.clone()
    }

    async fn log_mark(&self) -> LogMark {
        let file = self.log.clone();
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
        self.discard_prepared().await;
        if let Some(mut e) = self.etcd.take() {
            e.stop(Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/readyz?verbose` bodies of kube-apiserver v1.36.2 starting on a fresh etcd (trimmed
    /// `[+]` lines), at 0.15 s, 0.85 s and 1.72 s.
    #[test]
    fn a_server_is_warm_when_only_the_polling_hooks_are_left() {
        let starting = "[+]ping ok\n[-]informer-sync failed: reason withheld\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: reason withheld\n[-]autoregister-completion failed: reason withheld\nreadyz check failed\n";
        let both = "[+]ping ok\n[+]informer-sync ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n";
        let rbac = "[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[+]poststarthook/scheduling/bootstrap-system-priority-classes ok\nreadyz check failed\n";
        assert_eq!(Readyz::of_failing_checks(starting), Readyz::Starting);
        assert_eq!(Readyz::of_failing_checks(both), Readyz::Warm);
        assert_eq!(Readyz::of_failing_checks(rbac), Readyz::Warm);
        // Nothing failing but not a success status, or a body we do not know: not warm.
        assert_eq!(
            Readyz::of_failing_checks("readyz check failed\n"),
            Readyz::Starting
        );
        assert_eq!(
            Readyz::of_failing_checks("Internal Server Error"),
            Readyz::Starting
        );
        assert!(Readyz::Starting < Readyz::Warm && Readyz::Warm < Readyz::Ready);
    }

    #[test]
    fn prepared_servers_follow_the_wanted_list() {
        let f = |x: &str| AuthSetup::Flags(vec![format!("--oidc-client-id={x}")]);
        let (a, b, c, d) = (f("a"), f("b"), f("c"), f("d"));
        // From nothing: the current one and the next, up to the limit.
        assert_eq!(
            plan_prepared(None, &[], &[a.clone(), b.clone(), c.clone()], 2),
            (vec![], vec![a.clone(), b.clone()])
        );
        // `a` runs: b is kept, c started; duplicates and the running one never count.
        let wanted = [a.clone(), b.clone(), b.clone(), c.clone(), d.clone()];
        assert_eq!(
            plan_prepared(Some(&a), std::slice::from_ref(&b), &wanted, 2),
            (vec![0], vec![c.clone()])
        );
        // What is no longer wanted is not kept; limit 0 prepares nothing.
        assert_eq!(
            plan_prepared(
                Some(&a),
                &[d.clone(), c.clone()],
                &[a.clone(), c.clone()],
                2
            ),
            (vec![1], vec![])
        );
        assert_eq!(
            plan_prepared(None, std::slice::from_ref(&b), &[a, b.clone()], 0),
            (vec![], vec![])
        );
    }
}
