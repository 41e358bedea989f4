//! `lab up|status|down` and `kanidm up|down`: leave a lab running for humans, with
//! kubeconfigs whose users log in through the exec credential plugin (`exec-credential`).

use crate::cluster::kind::{KindCluster, KindSettings};
use crate::cluster::local::LocalControlPlane;
use crate::cluster::{ClusterBackend, KanidmPlacement, kubeconfig};
use crate::kanidm::KanidmServer;
use crate::kanidm::credentials::{PersonSecrets, TotpKey};
use crate::kanidm::server::lab_http_client;
use crate::login::browser::Browser;
use crate::login::flow::{LoginOutcomeActual, LoginRequest, Person};
use crate::pki;
use crate::render::{K8sVersion, LabFacts};
use crate::run::kanidm_lab;
use crate::scenario::LoadedScenario;
use crate::scenario::model::CredentialKind;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a running lab needs to be found and used from another process. Holds secrets:
/// written 0600 inside the 0700 lab directory.
#[derive(Serialize, Deserialize)]
pub struct LabState {
    pub pid: u32,
    /// When that process started (`/proc/<pid>/stat`): a pid reused by another program is
    /// never mistaken for the lab.
    #[serde(default)]
    pub pid_start: Option<u64>,
    pub scenario: String,
    pub dir: PathBuf,
    pub kanidm_origin: String,
    pub ca_file: PathBuf,
    pub spki_pin: String,
    pub api_server: Option<String>,
    /// The API server's authentication as `explain`/`verify` take it: `--auth-config <file>`
    /// or `--oidc-flags <flags>` (with the CA path as it is on this machine).
    #[serde(default)]
    pub auth_args: Vec<String>,
    pub admin_kubeconfig: Option<PathBuf>,
    pub login_client: String,
    pub login_scopes: Vec<String>,
    pub redirect_port: Option<u16>,
    pub redirect_path: String,
    pub persons: BTreeMap<String, StoredPerson>,
    /// How the kubeconfigs log people in: `kubelogin <version> (<path>)`, or the built-in
    /// exec plugin (None).
    #[serde(default)]
    pub kubelogin: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct StoredPerson {
    pub password: String,
    pub totp_secret: Option<Vec<u8>>,
    pub totp_step: u64,
    pub totp_digits: u8,
    pub totp_algorithm: String,
    pub uuid: String,
    pub passkey: bool,
    pub kubeconfig: Option<PathBuf>,
}

impl StoredPerson {
    fn secrets(&self, last_step: u64) -> PersonSecrets {
        PersonSecrets {
            password: self.password.clone(),
            totp: self.totp_secret.clone().map(|secret| TotpKey {
                secret,
                step: self.totp_step,
                digits: self.totp_digits,
                algorithm: match self.totp_algorithm.as_str() {
                    "SHA1" => totp_rs::Algorithm::SHA1,
                    "SHA512" => totp_rs::Algorithm::SHA512,
                    _ => totp_rs::Algorithm::SHA256,
                },
                last_used_step: std::sync::Arc::new(std::sync::Mutex::new(last_step)),
            }),
            reset_token: None,
        }
    }

    /// The current TOTP code (for a human logging in through the UI).
    pub fn current_totp(&self) -> Option<String> {
        let key = self.secrets(0).totp?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        key.code_at(now)
            .ok()
            .map(|(c, _)| format!("{c:0w$}", w = key.digits as usize))
    }
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

pub fn read_state(dir: &Path) -> Result<LabState> {
    let p = state_path(dir);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "no lab at {} (is it up? `cargo xtask lab up --scenario <name>`)",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", p.display()))
}

/// The API server of a lab.
// One per lab; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum LabCluster {
    Local(LocalControlPlane),
    Kind(KindCluster),
}

/// Running pieces of a lab started by `up`.
pub struct RunningLab {
    pub state: LabState,
    pub kanidm: KanidmServer,
    pub cluster: Option<LabCluster>,
}

impl RunningLab {
    pub async fn shutdown(mut self) {
        // Kanidm first: on kind it lives in the node's network namespace.
        self.kanidm.stop().await;
        match self.cluster.take() {
            Some(LabCluster::Local(mut c)) => c.shutdown().await,
            Some(LabCluster::Kind(mut c)) => c.shutdown().await,
            None => {}
        }
        // Keys, passwords and tokens go with the lab.
        let _ = std::fs::remove_dir_all(&self.state.dir);
    }
}

/// What `lab up` / `kanidm up` start.
pub struct UpOptions {
    /// Start an API server too (`lab up`), not only Kanidm (`kanidm up`).
    pub with_cluster: bool,
    pub k8s: K8sVersion,
    /// `local` or `kind`.
    pub backend: crate::cluster::Backend,
    pub kind: KindSettings,
    /// Which Kanidm; None: a kanidmd binary if found, else the default image.
    pub kanidm: Option<crate::kanidm::KanidmSource>,
    /// Kubeconfigs through kubelogin when it is found (true), or always the built-in exec
    /// plugin (false, `--builtin-login`).
    pub kubelogin: bool,
}

impl LabState {
    /// A fresh lab's state, before any API server is attached.
    fn new(
        s: &LoadedScenario,
        dir: &Path,
        origin: &str,
        pki: &pki::LabPki,
        persons: BTreeMap<String, StoredPerson>,
    ) -> LabState {
        LabState {
            pid: std::process::id(),
            pid_start: process_start_time(std::process::id()),
            scenario: s.name.clone(),
            dir: dir.to_path_buf(),
            kanidm_origin: origin.to_string(),
            ca_file: pki.ca_cert.clone(),
            spki_pin: pki.kanidm_spki_sha256.clone(),
            api_server: None,
            auth_args: Vec::new(),
            admin_kubeconfig: None,
            login_client: s.scenario.login.client.value.clone(),
            login_scopes: s.scenario.login.scopes.clone(),
            redirect_port: s.scenario.login.redirect_port,
            redirect_path: s
                .scenario
                .login
                .redirect_path
                .clone()
                .unwrap_or_else(|| "/callback".into()),
            persons,
            kubelogin: None,
        }
    }
}

/// What the exec plugin needs per person (password, TOTP key, UUID), and each TOTP key's
/// last used step on disk (the plugin runs in other processes).
fn stored_persons(
    s: &LoadedScenario,
    p: &crate::kanidm::Provisioned,
    dir: &Path,
) -> Result<BTreeMap<String, StoredPerson>> {
    let mut persons = BTreeMap::new();
    for person in &s.scenario.kanidm.persons {
        let name = &person.name.value;
        let sec = p
            .secrets
            .get(name)
            .ok_or_else(|| anyhow!("no credentials recorded for {name}"))?;
        persons.insert(
            name.clone(),
            StoredPerson {
                password: sec.password.clone(),
                totp_secret: sec.totp.as_ref().map(|t| t.secret.clone()),
                totp_step: sec.totp.as_ref().map(|t| t.step).unwrap_or(30),
                totp_digits: sec.totp.as_ref().map(|t| t.digits).unwrap_or(6),
                totp_algorithm: sec
                    .totp
                    .as_ref()
                    .map(|t| format!("{:?}", t.algorithm))
                    .unwrap_or_default(),
                uuid: p.uuids.get(name).cloned().unwrap_or_default(),
                passkey: person.credential == CredentialKind::Passkey,
                kubeconfig: None,
            },
        );
        if let Some(t) = &sec.totp {
            let last = t.last_used_step.lock().map(|g| *g).unwrap_or(0);
            std::fs::create_dir_all(dir.join("tokens"))?;
            std::fs::write(
                dir.join("tokens").join(format!("{name}.totp-step")),
                last.to_string(),
            )?;
        }
    }
    Ok(persons)
}

/// Start Kanidm (and, with `with_cluster`, an API server on the chosen backend) in the
/// scenario's state. `exe` is the program kubeconfigs call for credentials
/// (`<exe> exec-credential …`).
pub async fn up(
    s: &LoadedScenario,
    dir: &Path,
    opts: &UpOptions,
    exe: &Path,
) -> Result<RunningLab> {
    let (with_cluster, v) = (opts.with_cluster, opts.k8s);
    let starting = owner_of(dir).is_some_and(|o| o.owner_running());
    if starting || read_state(dir).is_ok_and(|old| old.owner_running()) {
        let pid = owner_of(dir).map(|o| o.pid).unwrap_or_default();
        bail!(
            "a lab is already running from {} (pid {pid}); `cargo xtask lab down` first",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    // Who owns this directory from the first moment (the state file comes at the end).
    std::fs::write(owner_path(dir), serde_json::to_string(&Owner::me())?)?;
    let pki = pki::generate_local(&dir.join("pki"))?;
    let http = lab_http_client(&pki.ca_pem)?;
    let kdir = dir.join("kanidm");
    std::fs::create_dir_all(&kdir)?;
    // On kind the cluster comes first: Kanidm lives in the node's network namespace.
    let mut kind = None;
    if with_cluster && opts.backend == crate::cluster::Backend::Kind {
        let progress = crate::progress::Progress::default();
        let c = KindCluster::create(&dir.join("cluster"), &pki, v, &opts.kind, &progress).await?;
        for n in &c.notes {
            progress.phase(&format!("note: {n}"));
        }
        kind = Some(c);
    }
    let placement = kind
        .as_ref()
        .map(|c| c.kanidm_placement())
        .unwrap_or(KanidmPlacement::HostLoopback);
    let source = match &opts.kanidm {
        Some(k) => k.clone(),
        None => kanidm_lab::default_source(
            placement == KanidmPlacement::HostLoopback,
            opts.kind.images.kanidm_image(),
        )?,
    };
    kanidm_lab::check_source(placement == KanidmPlacement::HostLoopback, &source).await?;
    let mut kanidm =
        kanidm_lab::start_server(&kdir, &pki, &http, (&placement, None), &source).await?;
    let endpoint = kanidm.endpoint().clone();
    let (_, p) = match kanidm_lab::provision_fresh(&kanidm, s, &http).await {
        Ok(x) => x,
        Err(e) => {
            kanidm.stop().await;
            return Err(e);
        }
    };
    let persons = stored_persons(s, &p, dir)?;
    let mut state = LabState::new(s, dir, &endpoint.origin, &pki, persons);
    let mut cluster = None;
    if with_cluster {
        let mut cp = match kind {
            Some(k) => LabCluster::Kind(k),
            None => {
                let bins =
                    crate::tools::control_plane_for(&crate::tools::Places::from_env(), v.minor)
                        .await?;
                LabCluster::Local(
                    LocalControlPlane::start(&dir.join("cluster"), &pki, &bins).await?,
                )
            }
        };
        let values = p.placeholder_values(&endpoint);
        match &mut cp {
            LabCluster::Local(c) => {
                apply_to_cluster(c, s, values, &pki, v, dir, exe, opts.kubelogin, &mut state)
                    .await?
            }
            LabCluster::Kind(c) => {
                apply_to_cluster(c, s, values, &pki, v, dir, exe, opts.kubelogin, &mut state)
                    .await?
            }
        }
        cluster = Some(cp);
    }
    crate::pki::write_secret(&state_path(dir), &serde_json::to_string_pretty(&state)?)?;
    Ok(RunningLab {
        state,
        kanidm,
        cluster,
    })
}

/// The scenario's API-server authentication and RBAC on `cluster`, and a kubeconfig per
/// person whose user logs in through the exec plugin; recorded in `state`.
#[allow(clippy::too_many_arguments)]
async fn apply_to_cluster(
    cluster: &mut impl ClusterBackend,
    s: &LoadedScenario,
    values: crate::scenario::placeholder::Values,
    pki: &pki::LabPki,
    v: K8sVersion,
    dir: &Path,
    exe: &Path,
    use_kubelogin: bool,
    state: &mut LabState,
) -> Result<()> {
    let facts = LabFacts {
        values,
        ca_pem: pki.ca_pem.clone(),
        ca_path_for_apiserver: cluster.ca_path_for_apiserver(),
    };
    let auth = crate::render::plan::auth_setup(s, &facts, v)?;
    cluster.configure_auth(&auth).await?;
    state.auth_args = match &auth {
        crate::cluster::AuthSetup::Structured { config_yaml } => {
            let f = dir.join("apiserver-authentication-config.yaml");
            std::fs::write(&f, config_yaml)?;
            vec!["--auth-config".into(), f.to_string_lossy().into_owned()]
        }
        crate::cluster::AuthSetup::Flags(flags) => vec![
            "--oidc-flags".into(),
            crate::explain::source::flags_here(flags, &facts.ca_path_for_apiserver, &pki.ca_cert),
        ],
    };
    let admin = crate::rbac_apply::admin_client(cluster.admin_kubeconfig()).await?;
    crate::rbac_apply::replace(&admin, &crate::render::rbac::render(s, &facts)?).await?;
    state.api_server = Some(cluster.server_url().to_string());
    state.admin_kubeconfig = Some(cluster.admin_kubeconfig().to_path_buf());
    let exe_s = exe.to_string_lossy().into_owned();
    if let Some(found) = crate::tools::KUBELOGIN.find().filter(|_| use_kubelogin) {
        return kubelogin_kubeconfigs(cluster, s, &facts, pki, dir, exe, &found.path, state).await;
    }
    for (name, person) in state.persons.iter_mut() {
        let path = dir.join(format!("{name}.kubeconfig"));
        let args = vec![
            "exec-credential".into(),
            "--lab".into(),
            dir.to_string_lossy().into_owned(),
            "--person".into(),
            name.clone(),
        ];
        kubeconfig::write(
            &path,
            cluster.server_url(),
            &cluster.server_ca_file(),
            name,
            kubeconfig::UserAuth::Exec {
                command: &exe_s,
                args,
            },
        )?;
        person.kubeconfig = Some(path);
    }
    Ok(())
}

/// With kubelogin found: each person's kubeconfig user is kubelogin's exec block, the
/// scenario's own (`login.via: kubelogin`, `exec`) or post 1's flags for the scenario's
/// client and scopes, plus the lab's CA, a token cache in the lab and a `--browser-command`
/// that logs the person in headlessly (`<exe> kubelogin-browser`). The command is kubelogin's
/// path, so kubectl needs no PATH change.
#[allow(clippy::too_many_arguments)]
async fn kubelogin_kubeconfigs(
    cluster: &mut impl ClusterBackend,
    s: &LoadedScenario,
    facts: &LabFacts,
    pki: &pki::LabPki,
    dir: &Path,
    exe: &Path,
    kubelogin: &Path,
    state: &mut LabState,
) -> Result<()> {
    use crate::scenario::model::LoginVia;
    let version = crate::login::kubelogin::version_of(kubelogin).await?;
    let login = &s.scenario.login;
    let written: Option<(String, Vec<String>)> = match (&login.via, &login.kubelogin) {
        (LoginVia::Kubelogin, Some(k)) => match (&k.exec, &k.setup) {
            (Some(e), _) => Some((
                e.value.api_version.clone(),
                e.value.args.iter().map(|a| a.value.clone()).collect(),
            )),
            (None, Some(f)) => Some((
                "client.authentication.k8s.io/v1".into(),
                ["oidc-login", "get-token"]
                    .iter()
                    .map(|w| w.to_string())
                    .chain(f.value.iter().map(|a| a.value.clone()))
                    .collect(),
            )),
            (None, None) => None,
        },
        _ => None,
    };
    let (api_version, mut args) = match written {
        Some((v, a)) => {
            let resolved: Result<Vec<String>, String> = a
                .iter()
                .map(|w| crate::scenario::placeholder::resolve(w, &facts.values))
                .collect();
            (
                v,
                resolved.map_err(|e| anyhow!("kubelogin arguments: {e}"))?,
            )
        }
        None => {
            let issuer =
                crate::scenario::placeholder::issuer_url(&facts.values.origin, &login.client.value);
            let mut a = vec![
                "oidc-login".to_string(),
                "get-token".into(),
                format!("--oidc-issuer-url={issuer}"),
                format!("--oidc-client-id={}", login.client.value),
            ];
            let extra: Vec<&str> = login
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|sc| *sc != "openid")
                .collect();
            if !extra.is_empty() {
                a.push(format!("--oidc-extra-scope={}", extra.join(",")));
            }
            ("client.authentication.k8s.io/v1beta1".into(), a)
        }
    };
    // `kubectl oidc-login …` → kubelogin itself, so no PATH change is needed.
    if args.first().map(String::as_str) == Some("oidc-login") {
        args.remove(0);
    }
    let cache = dir.join("kubelogin-cache");
    std::fs::create_dir_all(&cache)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700))?;
    let command = kubelogin.to_string_lossy().into_owned();
    for (name, person) in state.persons.iter_mut() {
        let browser = dir.join(format!("browser-{name}"));
        std::fs::write(
            &browser,
            format!(
                "#!/bin/sh\n# kanidm-k8s-lab: kubelogin's --browser-command for {name}: logs {name} in headlessly through Kanidm's pages\nexec {} kubelogin-browser --lab {} --person {} \"$1\"\n",
                shell_quote(&exe.to_string_lossy()),
                shell_quote(&dir.to_string_lossy()),
                shell_quote(name)
            ),
        )?;
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o700))?;
        let mut a = args.clone();
        a.push(format!("--certificate-authority={}", pki.ca_cert.display()));
        a.push(format!("--token-cache-dir={}", cache.join(name).display()));
        a.push(format!("--browser-command={}", browser.display()));
        let path = dir.join(format!("{name}.kubeconfig"));
        kubeconfig::write(
            &path,
            cluster.server_url(),
            &cluster.server_ca_file(),
            name,
            kubeconfig::UserAuth::ExecBlock {
                api_version: &api_version,
                command: &command,
                args: &a,
                interactive_mode: api_version.ends_with("/v1").then_some("Never"),
            },
        )?;
        person.kubeconfig = Some(path);
    }
    state.kubelogin = Some(format!("kubelogin {version} ({command})"));
    Ok(())
}

/// A person's secrets with the last TOTP step any process of this lab used (Kanidm refuses
/// a code twice), and the file that step is kept in.
fn secrets_with_step(
    dir: &Path,
    person: &str,
    stored: &StoredPerson,
) -> Result<(PersonSecrets, PathBuf)> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let step_file = tokens.join(format!("{person}.totp-step"));
    let last: u64 = std::fs::read_to_string(&step_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Ok((stored.secrets(last), step_file))
}

/// Keep the TOTP step a login used for the lab's next process.
fn save_step(step_file: &Path, secrets: &PersonSecrets) -> Result<()> {
    if let Some(t) = &secrets.totp
        && let Ok(g) = t.last_used_step.lock()
    {
        std::fs::write(step_file, g.to_string())?;
    }
    Ok(())
}

/// kubelogin's `--browser-command` in a lab: log `person` in through Kanidm's pages in a
/// headless browser, ending at kubelogin's own redirect listener (which then has the code).
pub async fn kubelogin_browser(dir: &Path, person: &str, url: &str) -> Result<()> {
    let state = read_state(dir)?;
    let stored = state
        .persons
        .get(person)
        .ok_or_else(|| anyhow!("no person `{person}` in lab {}", state.scenario))?;
    let (secrets, step_file) = secrets_with_step(dir, person, stored)?;
    let listener = url::Url::parse(url).map_err(|e| anyhow!("kubelogin's URL `{url}`: {e}"))?;
    let seen = crate::login::kubelogin::authorize_request(url).await;
    let prefix = crate::login::kubelogin::redirect_prefix(seen.as_ref(), url);
    let bdir = dir.join(format!("kubelogin-browser-{}", std::process::id()));
    let mut browser = Browser::start(&bdir).await?;
    let out = async {
        let client = browser.session(person, &state.spki_pin).await?;
        let r = crate::login::flow::drive_to_redirect(
            &client,
            &listener,
            &prefix,
            &Person {
                name: person,
                secrets: &secrets,
                passkey: stored.passkey,
            },
            &dir.join("artifacts"),
        )
        .await;
        crate::login::browser::close_session(client).await;
        r
    }
    .await;
    browser.stop().await;
    let _ = std::fs::remove_dir_all(&bdir);
    save_step(&step_file, &secrets)?;
    match out? {
        None => Ok(()),
        Some(page) => bail!("Kanidm ended {person}'s login: {}", page.label()),
    }
}

pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// A process's start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

impl LabState {
    /// Is the process that wrote this state still running — the same process, not a later
    /// one that got its pid?
    pub fn owner_running(&self) -> bool {
        process_alive(self.pid)
            && self
                .pid_start
                .is_none_or(|t| process_start_time(self.pid) == Some(t))
    }
}

/// Ask a lab started by `up` to stop (SIGTERM), and wait for it.
pub async fn down(dir: &Path) -> Result<String> {
    let state = read_state(dir)?;
    if !state.owner_running() {
        let _ = std::fs::remove_file(state_path(dir));
        return Ok(format!(
            "lab {} was not running (stale state removed)",
            state.scenario
        ));
    }
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(state.pid as i32, libc::SIGTERM);
    }
    // A kind lab deletes its cluster on the way out (a few seconds).
    crate::wait::until(
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async { Ok((!state.owner_running()).then_some(())) },
        |after| {
            anyhow!(
                "lab process {} did not stop within {} s",
                state.pid,
                after.as_secs()
            )
        },
    )
    .await?;
    Ok(format!("lab {} stopped", state.scenario))
}

/// The process that owns a lab directory: pid and start time.
#[derive(Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start: Option<u64>,
}

impl Owner {
    fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start: process_start_time(pid),
        }
    }

    pub fn owner_running(&self) -> bool {
        process_alive(self.pid)
            && self
                .start
                .is_none_or(|t| process_start_time(self.pid) == Some(t))
    }
}

fn owner_path(dir: &Path) -> PathBuf {
    dir.join("owner.json")
}

/// The owner recorded in a lab directory, if any.
pub fn owner_of(dir: &Path) -> Option<Owner> {
    serde_json::from_str(&std::fs::read_to_string(owner_path(dir)).ok()?).ok()
}

/// An exclusive `flock` on `path`, waited for (a login takes seconds), released on drop.
async fn lock_exclusive(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let fd = file.as_raw_fd();
    crate::wait::until(
        Duration::from_secs(150),
        Duration::from_millis(100),
        // SAFETY: flock(2) on a descriptor we own for the duration of the call.
        || async move {
            Ok((unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(()))
        },
        |after| {
            anyhow!(
                "another login held {} for {} s",
                path.display(),
                after.as_secs()
            )
        },
    )
    .await?;
    Ok(file)
}

/// `client.authentication.k8s.io/v1` ExecCredential for a person: the cached id_token, or a
/// fresh browser login when the cache is empty or expires within a minute.
pub async fn exec_credential(dir: &Path, person: &str) -> Result<String> {
    let state = read_state(dir)?;
    let stored = state
        .persons
        .get(person)
        .ok_or_else(|| anyhow!("no person `{person}` in lab {}", state.scenario))?;
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let cache = tokens.join(format!("{person}.json"));
    // kubectl may call the plugin several times at once: one login per person at a time
    // (as kubelogin locks its token cache), the others then find the fresh token.
    let _lock = lock_exclusive(&tokens.join(format!("{person}.lock"))).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cached: Option<(String, u64)> = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| Some((v["id_token"].as_str()?.to_string(), v["exp"].as_u64()?)))
        .filter(|(_, exp)| *exp > now + 60);
    let (token, exp) = match cached {
        Some(c) => c,
        None => {
            let (secrets, step_file) = secrets_with_step(dir, person, stored)?;
            let ca_pem = std::fs::read_to_string(&state.ca_file)?;
            let http = lab_http_client(&ca_pem)?;
            let mut browser =
                Browser::start(&dir.join(format!("exec-browser-{}", std::process::id()))).await?;
            let issuer =
                crate::scenario::placeholder::issuer_url(&state.kanidm_origin, &state.login_client);
            let req = LoginRequest {
                issuer: &issuer,
                origin: &state.kanidm_origin,
                client_id: &state.login_client,
                scopes: &state.login_scopes,
                redirect_port: state.redirect_port,
                redirect_path: &state.redirect_path,
                spki_pin: &state.spki_pin,
                artifacts: &dir.join("artifacts"),
            };
            let out = crate::login::login(
                &browser,
                &http,
                &req,
                &Person {
                    name: person,
                    secrets: &secrets,
                    passkey: stored.passkey,
                },
            )
            .await;
            browser.stop().await;
            let _ =
                std::fs::remove_dir_all(dir.join(format!("exec-browser-{}", std::process::id())));
            save_step(&step_file, &secrets)?;
            match out? {
                LoginOutcomeActual::Token(t) => {
                    crate::pki::write_secret(
                        &cache,
                        &serde_json::json!({"id_token": t.id_token, "exp": t.expires_at})
                            .to_string(),
                    )?;
                    (t.id_token, t.expires_at)
                }
                other => bail!(
                    "login for {person} did not produce a token: {}",
                    other.label()
                ),
            }
        }
    };
    let ts = time::OffsetDateTime::from_unix_timestamp(exp as i64)?
        .format(&time::format_description::well_known::Rfc3339)?;
    Ok(serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token, "expirationTimestamp": ts}
    })
    .to_string())
}

/// What `lab up` / `kanidm up` prints once the lab runs: where everything is, how each
/// person logs in, and the `verify` line that checks the lab as a user's own cluster.
pub fn up_message(what: &str, st: &LabState) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{what} `{}` is up.", st.scenario);
    let _ = writeln!(
        out,
        "  Kanidm UI:      {}/ui  (the browser must trust {} or accept the lab certificate)",
        st.kanidm_origin,
        st.ca_file.display()
    );
    let _ = writeln!(out, "  lab CA:         {}", st.ca_file.display());
    if let Some(api) = &st.api_server {
        let _ = writeln!(out, "  API server:     {api}");
        if let Some(a) = &st.admin_kubeconfig {
            let _ = writeln!(
                out,
                "  admin:          kubectl --kubeconfig {} get ns",
                a.display()
            );
        }
    }
    for (name, p) in &st.persons {
        let _ = match &p.kubeconfig {
            Some(k) => writeln!(
                out,
                "  {name:<14}  kubectl --kubeconfig {} auth whoami   (logs in through {})",
                k.display(),
                match &st.kubelogin {
                    Some(kl) => format!("{kl}, its --browser-command a headless lab browser"),
                    None => "the lab's exec plugin and a headless browser".into(),
                }
            ),
            None => writeln!(out, "  {name:<14}  log in at {}/ui", st.kanidm_origin),
        };
    }
    let _ = writeln!(out, "  passwords/TOTP: cargo xtask {what} creds <person>");
    if !st.auth_args.is_empty() {
        let mut line = format!("cargo xtask verify --scenario {}", st.scenario);
        for (name, p) in &st.persons {
            if let Some(k) = &p.kubeconfig {
                line.push_str(&format!(" --user {name}={}", k.display()));
            }
        }
        for a in &st.auth_args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let _ = writeln!(out, "  check it as a user's own cluster:\n    {line}");
    }
    out
}

/// `s` as one shell word.
pub fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_is_not_the_lab() {
        let me = std::process::id();
        let start = process_start_time(me).expect("our own start time");
        assert_eq!(process_start_time(me), Some(start), "stable");
        let state = |pid_start| LabState {
            pid: me,
            pid_start,
            scenario: "x".into(),
            dir: PathBuf::new(),
            kanidm_origin: String::new(),
            ca_file: PathBuf::new(),
            spki_pin: String::new(),
            api_server: None,
            auth_args: Vec::new(),
            admin_kubeconfig: None,
            login_client: String::new(),
            login_scopes: vec![],
            redirect_port: None,
            redirect_path: String::new(),
            persons: BTreeMap::new(),
            kubelogin: None,
        };
        assert!(state(Some(start)).owner_running());
        // Same pid, another start time: a different process got the pid.
        assert!(!state(Some(start + 1)).owner_running());
        // States written before the field existed fall back to the pid alone.
        assert!(state(None).owner_running());
    }

    #[tokio::test]
    async fn one_login_per_person_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.lock");
        let first = lock_exclusive(&path).await.unwrap();
        let p2 = path.clone();
        let second = tokio::spawn(async move { lock_exclusive(&p2).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !second.is_finished(),
            "the second caller waits while the first logs in"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second caller proceeds once the first is done")
            .unwrap()
            .unwrap();
    }
}
