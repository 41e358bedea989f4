//! The main job: scenarios → PKI → Kanidm → cluster → login → assert → report.

use crate::check::CheckResult;
use crate::check::cause::{Cause, auth_error_of};
use crate::check::expect::{check_whoami, find_auth_line, last_init_failure, wait_oidc_ready};
use crate::check::kubectl::{self, Verdict};
use crate::cluster::{AuthSetup, ClusterBackend, KanidmPlacement, kubeconfig};
use crate::kanidm::server::{LocalKanidm, check_version, lab_http_client};
use crate::kanidm::{KanidmServer, Provisioned, provision, reconcile};
use crate::login::browser::Browser;
use crate::login::flow::{LoginOutcomeActual, LoginRequest, Person};
use crate::login::signins::{Kind, SignIns};
use crate::pki::{self, LabPki};
use crate::progress::Progress;
use crate::render::plan::auth_setup;
use crate::render::{self, K8sVersion, LabFacts};
use crate::scenario::LoadedScenario;
use crate::scenario::action::Action;
use crate::scenario::model::{CredentialKind, KanidmState, LoginOutcome};
use crate::scenario::placeholder::Values;
use crate::timings::Timings;
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct RunOptions {
    pub scenarios: Vec<LoadedScenario>,
    pub k8s: K8sVersion,
    pub artifacts: PathBuf,
    /// Never change Kanidm in place: a new server (and new sign-ins) per Kanidm state.
    pub fresh_kanidm: bool,
}

pub struct RunReport {
    pub results: Vec<CheckResult>,
    pub timings: Timings,
    pub artifacts: PathBuf,
    pub versions: BTreeMap<String, String>,
}

impl RunReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }
}

/// The run's Kanidm: one server, brought from scenario to scenario in place.
struct KanidmLab {
    server: KanidmServer,
    admin: kanidm_client::KanidmClient,
    /// The state the server is in now, and its fingerprint.
    state: KanidmState,
    fingerprint: String,
    provisioned: Provisioned,
    /// Login results per Kanidm state (fingerprint → person → outcome); cleared when an
    /// entry a token could refer to is deleted.
    tokens: BTreeMap<String, BTreeMap<String, LoginOutcomeActual>>,
    /// People's Kanidm sign-ins, kept so later logins are single sign-on.
    signins: SignIns,
    /// When tokens were last presented to the API server (the end of a scenario's checks).
    last_token_use: Option<Instant>,
}

impl KanidmLab {
    async fn stop(&mut self, logs: &Path, versions: &mut BTreeMap<String, String>) {
        self.signins.close().await;
        if let Some(v) = self.server.version() {
            versions.insert("kanidmd".into(), v.to_string());
        }
        self.server.stop().await;
        let _ = std::fs::create_dir_all(logs);
        if let Some(parent) = self.server.log().parent().and_then(|p| p.file_name()) {
            let _ = std::fs::copy(
                self.server.log(),
                logs.join(format!("{}-kanidmd.log", parent.to_string_lossy())),
            );
        }
    }
}

/// The Kanidm state and login settings of a scenario as text: equal text = reusable server and tokens.
fn kanidm_fingerprint(s: &LoadedScenario) -> String {
    let text = std::fs::read_to_string(&s.path).unwrap_or_default();
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_default();
    format!("{}|{}", v["kanidm"], v["login"])
}

pub struct Lab {
    pub dir: PathBuf,
    pub pki: LabPki,
    pub http: reqwest::Client,
    pub browser: Browser,
}

impl Lab {
    pub async fn new(dir: &Path) -> Result<Lab> {
        std::fs::create_dir_all(dir)?;
        let pki = pki::generate_local(&dir.join("pki"))?;
        let http = lab_http_client(&pki.ca_pem)?;
        let browser = Browser::start(&dir.join("browser")).await?;
        Ok(Lab {
            dir: dir.to_path_buf(),
            pki,
            http,
            browser,
        })
    }
}

pub async fn run_scenarios(
    opts: RunOptions,
    cluster: &mut impl ClusterBackend,
    lab: &Lab,
    progress: &Progress,
) -> Result<RunReport> {
    let mut timings = Timings::default();
    let mut results = Vec::new();
    let mut kanidm: Option<KanidmLab> = None;
    let mut versions = BTreeMap::new();
    for (i, s) in opts.scenarios.iter().enumerate() {
        let t0 = Instant::now();
        progress.scenario_start(i + 1, opts.scenarios.len(), &s.name);
        let outcome = run_scenario(
            s,
            &opts.artifacts,
            opts.k8s,
            cluster,
            lab,
            &mut kanidm,
            opts.fresh_kanidm,
            &mut timings,
            progress,
        )
        .await;
        match outcome {
            Ok(mut r) => results.append(&mut r),
            Err(e) => results.push(CheckResult {
                scenario: s.name.clone(),
                person: "-".into(),
                check: "setup".into(),
                passed: false,
                actual: "scenario could not run".into(),
                detail: Some(format!("{e:#}")),
                apiserver_line: None,
                seconds: t0.elapsed().as_secs_f64(),
            }),
        }
        timings.add(&format!("scenario {}", s.name), t0.elapsed());
        progress.scenario_done(
            &s.name,
            results
                .iter()
                .filter(|r| r.scenario == s.name && !r.passed)
                .count(),
            t0.elapsed(),
        );
    }
    if let Some(mut k) = kanidm.take() {
        k.stop(&opts.artifacts.join("logs"), &mut versions).await;
    }
    if let Some(v) = cluster.server_version().await {
        let wanted = format!("v1.{}.", opts.k8s.minor);
        if !v.starts_with(&wanted) {
            progress.phase(&format!(
                "note: the API server binary is {v}; configs were rendered for Kubernetes {} (the kind backend runs each minor's own node image)",
                opts.k8s
            ));
        }
        versions.insert("kube-apiserver".into(), v);
    }
    let _ = cluster.collect_logs(&opts.artifacts.join("logs"));
    Ok(RunReport {
        results,
        timings,
        artifacts: opts.artifacts,
        versions,
    })
}

async fn start_kanidm(
    s: &LoadedScenario,
    lab: &Lab,
    n: usize,
    placement: &KanidmPlacement,
    port: u16,
    timings: &mut Timings,
    progress: &Progress,
) -> Result<KanidmLab> {
    let t = Instant::now();
    let dir = lab.dir.join(format!("kanidm-{n}"));
    std::fs::create_dir_all(&dir)?;
    let mut server = match placement {
        KanidmPlacement::LocalProcess => {
            KanidmServer::Local(LocalKanidm::start(&dir, &lab.pki, &lab.http, port).await?)
        }
        KanidmPlacement::ContainerInNode { node, image, .. } => KanidmServer::Container(
            crate::kanidm::container::ContainerKanidm::start(
                &dir, &lab.pki, &lab.http, node, port, image,
            )
            .await?,
        ),
    };
    if let Err(e) = check_version(server.version()) {
        server.stop().await;
        return Err(e);
    }
    timings.add("kanidm ready", t.elapsed());
    progress.step(&format!(
        "kanidmd {} ready at {}",
        server.version().unwrap_or_default(),
        server.endpoint().origin
    ));
    let t = Instant::now();
    let pw = server.recover_account("idm_admin").await?;
    let kc = provision::admin_client(server.endpoint(), &pw).await?;
    let provisioned = provision::apply(&kc, s, &lab.http, server.endpoint()).await?;
    let problems = provision::verify(s, &provisioned, server.endpoint());
    if !problems.is_empty() {
        anyhow::bail!(
            "Kanidm state differs from the scenario:\n  {}",
            problems.join("\n  ")
        );
    }
    timings.add("kanidm provisioning", t.elapsed());
    progress.step("Kanidm provisioned and read back");
    Ok(KanidmLab {
        server,
        admin: kc,
        state: s.scenario.kanidm.clone(),
        fingerprint: kanidm_fingerprint(s),
        provisioned,
        tokens: BTreeMap::new(),
        signins: SignIns::default(),
        last_token_use: None,
    })
}

/// The run's Kanidm in this scenario's state: unchanged, changed in place, or (first
/// scenario, or a change that cannot be made in place) a fresh server.
async fn prepare_kanidm<'k>(
    s: &LoadedScenario,
    cluster: &impl ClusterBackend,
    lab: &Lab,
    kanidm: &'k mut Option<KanidmLab>,
    fresh_kanidm: bool,
    timings: &mut Timings,
    progress: &Progress,
) -> Result<&'k mut KanidmLab> {
    let fp = kanidm_fingerprint(s);
    let blocker = kanidm.as_ref().map(|k| {
        if fresh_kanidm && k.fingerprint != fp {
            Some("--fresh-kanidm, and the Kanidm state differs".to_string())
        } else {
            reconcile::in_place_blocker(&k.state, &s.scenario.kanidm)
        }
    });
    let mut why_fresh = blocker.flatten();
    if let Some(k) = kanidm.as_mut()
        && why_fresh.is_none()
    {
        if k.fingerprint == fp {
            progress.step("reusing Kanidm (same state as the previous scenario) and its tokens");
            return kanidm.as_mut().ok_or_else(|| anyhow!("no Kanidm server"));
        }
        match change_in_place(s, k, lab, fp).await {
            Ok(note) => {
                timings.add("kanidm changed in place", note.0);
                progress.step(&note.1);
                return kanidm.as_mut().ok_or_else(|| anyhow!("no Kanidm server"));
            }
            // The server is now somewhere between two states: never reuse it.
            Err(e) => why_fresh = Some(format!("changing it in place failed: {e:#}")),
        }
    }
    if let Some(mut old) = kanidm.take() {
        progress.step(&format!(
            "starting a fresh Kanidm: {}",
            why_fresh.unwrap_or_default()
        ));
        let mut versions = BTreeMap::new();
        old.stop(&lab.dir.join("logs"), &mut versions).await;
    }
    let placement = cluster.kanidm_placement();
    let port = match &placement {
        KanidmPlacement::LocalProcess => 0,
        KanidmPlacement::ContainerInNode { port, .. } => *port,
    };
    let n = lab_counter(&lab.dir);
    *kanidm = Some(start_kanidm(s, lab, n, &placement, port, timings, progress).await?);
    kanidm.as_mut().ok_or_else(|| anyhow!("no Kanidm server"))
}

/// Reconcile the running Kanidm to the scenario; returns how long it took and a progress note.
async fn change_in_place(
    s: &LoadedScenario,
    k: &mut KanidmLab,
    lab: &Lab,
    fp: String,
) -> Result<(Duration, String)> {
    let t = Instant::now();
    let prev = reconcile::Previous {
        state: &k.state,
        provisioned: &k.provisioned,
    };
    let applied =
        reconcile::reconcile(&k.admin, Some(prev), s, &lab.http, k.server.endpoint()).await?;
    for p in &applied.replaced_persons {
        k.signins.forget(p).await;
    }
    if applied.deleted_entries {
        k.tokens.clear();
    }
    k.state = applied.server_state;
    k.fingerprint = fp;
    k.provisioned = applied.provisioned;
    let problems = provision::verify(s, &k.provisioned, k.server.endpoint());
    if !problems.is_empty() {
        anyhow::bail!(
            "Kanidm state differs from the scenario:\n  {}",
            problems.join("\n  ")
        );
    }
    let recreated = if applied.replaced_persons.is_empty() {
        String::new()
    } else {
        format!(
            ", recreated {} (credential kind changed)",
            applied.replaced_persons.join(", ")
        )
    };
    let people = k.signins.people();
    let kept = if people.is_empty() {
        "none".to_string()
    } else {
        people.join(", ")
    };
    Ok((
        t.elapsed(),
        format!(
            "Kanidm changed in place ({} write(s){recreated}); signed in: {kept}",
            applied.changes
        ),
    ))
}

fn facts_for(k: &KanidmLab, lab: &Lab, ca_path: String) -> LabFacts {
    let ep = k.server.endpoint();
    let mut values = Values {
        domain: ep.domain.clone(),
        origin: ep.origin.clone(),
        ..Default::default()
    };
    for name in k.provisioned.clients.keys() {
        values.issuers.insert(name.clone(), ep.issuer(name));
    }
    values.uuids = k.provisioned.uuids.clone();
    LabFacts {
        values,
        ca_pem: lab.pki.ca_pem.clone(),
        ca_path_for_apiserver: ca_path,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_scenario(
    s: &LoadedScenario,
    artifacts: &Path,
    v: K8sVersion,
    cluster: &mut impl ClusterBackend,
    lab: &Lab,
    kanidm: &mut Option<KanidmLab>,
    fresh_kanidm: bool,
    timings: &mut Timings,
    progress: &Progress,
) -> Result<Vec<CheckResult>> {
    let k = prepare_kanidm(s, cluster, lab, kanidm, fresh_kanidm, timings, progress).await?;
    let facts = facts_for(k, lab, cluster.ca_path_for_apiserver());
    let auth = auth_setup(s, &facts, v)?;
    // Secrets (kubeconfigs with tokens) stay in the lab; what helps debugging goes to artifacts.
    let scen_dir = lab.dir.join("scenarios").join(&s.name);
    std::fs::create_dir_all(&scen_dir)?;
    let art_dir = artifacts.join("scenarios").join(&s.name);
    std::fs::create_dir_all(&art_dir)?;
    match &auth {
        AuthSetup::Structured { config_yaml } => {
            std::fs::write(art_dir.join("authentication-config.yaml"), config_yaml)?
        }
        AuthSetup::Flags(f) => std::fs::write(art_dir.join("oidc-flags.txt"), f.join("\n"))?,
    }
    // The API server restart and the browser logins do not depend on each other: overlap
    // them. (The API server must start after Kanidm serves the client's discovery document:
    // a failed first discovery is retried only after 10 s.)
    let people: Vec<String> = {
        let mut p: Vec<String> = s
            .scenario
            .expect
            .iter()
            .map(|e| e.person.value.clone())
            .collect();
        p.dedup();
        p
    };
    let t_cluster = Instant::now();
    let reuses_tokens = k
        .tokens
        .get(&k.fingerprint)
        .is_some_and(|done| people.iter().any(|p| done.contains_key(p)));
    let login_fut = login_all(s, k, lab, &art_dir, &people);
    let (cluster_res, login_res) = tokio::join!(cluster.configure_auth(&auth), login_fut);
    cluster_res.context("configuring the API server")?;
    let login_times = login_res?;
    timings.add("api server configured", t_cluster.elapsed());
    // A token that succeeded under the old config is answered from the API server's cache
    // for 10 s after a reload in place; fresh tokens and restarted API servers are not.
    if cluster.reloaded_in_place()
        && reuses_tokens
        && let Some(wait) = k
            .last_token_use
            .map(|t| (t + TOKEN_SUCCESS_CACHE).saturating_duration_since(Instant::now()))
            .filter(|w| !w.is_zero())
    {
        progress.step(&format!(
            "waiting {:.1} s for the API server's token cache (this scenario reuses tokens)",
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        timings.add("token cache wait", wait);
    }
    for (p, d) in login_times {
        timings.add(&format!("login {p}"), d);
    }
    progress.step("API server configured; logins done");

    let t = Instant::now();
    let admin = crate::rbac_apply::admin_client(cluster.admin_kubeconfig()).await?;
    let objects = render::rbac::render(s, &facts)?;
    crate::rbac_apply::replace(&admin, &objects).await?;
    let mut namespaces = Vec::new();
    for e in &s.scenario.expect {
        for a in e.allowed.iter().chain(&e.forbidden) {
            if let Ok(action) = Action::parse(&a.value) {
                namespaces.extend(action.namespace_target().map(str::to_string));
                if let crate::scenario::action::Scope::Namespace(ns) = &action.scope {
                    namespaces.push(ns.clone());
                }
            }
        }
    }
    namespaces.sort();
    namespaces.dedup();
    crate::rbac_apply::ensure_namespaces(&admin, &namespaces).await?;
    timings.add("rbac applied", t.elapsed());

    let mut results = Vec::new();
    let mut oidc_ready = false;
    for e in &s.scenario.expect {
        let person = e.person.value.as_str();
        let outcome = k
            .tokens
            .get(&k.fingerprint)
            .and_then(|t| t.get(person))
            .cloned()
            .ok_or_else(|| anyhow!("no login result for {person}"))?;
        let t = Instant::now();
        let mut push = |check: String,
                        passed: bool,
                        actual: String,
                        detail: Option<String>,
                        line: Option<String>| {
            results.push(CheckResult {
                scenario: s.name.clone(),
                person: person.to_string(),
                check,
                passed,
                actual,
                detail,
                apiserver_line: line,
                seconds: t.elapsed().as_secs_f64(),
            });
        };
        let token = match (&outcome, e.login) {
            (LoginOutcomeActual::Token(tok), LoginOutcome::Ok) => {
                push("login".into(), true, outcome.label(), None, None);
                tok.clone()
            }
            (LoginOutcomeActual::AccessDenied, LoginOutcome::AccessDenied) => {
                push(
                    "login".into(),
                    true,
                    "Kanidm showed Access Denied".into(),
                    None,
                    None,
                );
                continue;
            }
            (actual, want) => {
                push(
                    "login".into(),
                    false,
                    actual.label(),
                    Some(format!(
                        "expected login {want:?}; artifacts in {}",
                        art_dir.display()
                    )),
                    None,
                );
                continue;
            }
        };
        let kubeconfig_path = scen_dir.join(format!("{person}.kubeconfig"));
        kubeconfig::write(
            &kubeconfig_path,
            cluster.server_url(),
            &cluster.server_ca_file(),
            person,
            kubeconfig::UserAuth::Token(&token.id_token),
        )?;
        if !oidc_ready {
            let t = Instant::now();
            wait_oidc_ready(cluster, &kubeconfig_path).await?;
            timings.add("oidc ready after api server", t.elapsed());
            oidc_ready = true;
        }
        if let Some(want) = &e.unauthorized {
            let mark = cluster.log_mark();
            let run = kubectl::run(
                &kubeconfig_path,
                &["auth".into(), "whoami".into(), "-o".into(), "json".into()],
            )
            .await?;
            let line = find_auth_line(&cluster.log_lines_since(&mark));
            let mut err = line.as_deref().and_then(auth_error_of);
            let mut cause = err.as_deref().and_then(Cause::classify);
            if cause == Some(Cause::AuthenticatorNotInitialized)
                && let Some((c, text)) = last_init_failure(cluster)
            {
                // The authenticator never initialised: its discovery error says why.
                cause = Some(c);
                err = Some(format!("{} (discovery: {text})", err.unwrap_or_default()));
            }
            let passed = run.verdict == Verdict::Unauthorized && cause == Some(want.cause.value);
            let actual = match (&run.verdict, cause) {
                (Verdict::Unauthorized, Some(c)) => format!("Unauthorized (401), cause {c}"),
                (Verdict::Unauthorized, None) => {
                    "Unauthorized (401), cause not found in the API server log".into()
                }
                (other, _) => other.label().to_string(),
            };
            let detail = (!passed).then(|| match cause {
                Some(c) if run.verdict == Verdict::Unauthorized => format!(
                    "expected Unauthorized with cause {}, but the API server rejected the token for {c}: {}",
                    want.cause.value,
                    c.hint()
                ),
                _ => format!("expected Unauthorized with cause {} ({})", want.cause.value, want.cause.value.hint()),
            });
            push(
                format!("unauthorized: {}", want.cause.value),
                passed,
                actual,
                detail,
                err.map(|e| format!("err=\"{e}\"")),
            );
            continue;
        }
        if let Some(w) = &e.whoami {
            let run = kubectl::run(
                &kubeconfig_path,
                &["auth".into(), "whoami".into(), "-o".into(), "json".into()],
            )
            .await?;
            let (passed, actual, detail) = check_whoami(&run, w, &facts.values);
            push("whoami".into(), passed, actual, detail, None);
        }
        for (want_allowed, list) in [(true, &e.allowed), (false, &e.forbidden)] {
            for a in list {
                let action = Action::parse(&a.value).map_err(|m| anyhow!("{m}"))?;
                let args = kubectl::args_for(&action);
                let want = if want_allowed {
                    Verdict::Allowed
                } else {
                    Verdict::Forbidden
                };
                // RBAC changes reach the authorizer's cache within moments: retry briefly
                // while the answer differs, never past 5 s.
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut run = kubectl::run(&kubeconfig_path, &args).await?;
                while run.verdict != want
                    && matches!(run.verdict, Verdict::Allowed | Verdict::Forbidden)
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    run = kubectl::run(&kubeconfig_path, &args).await?;
                }
                let passed = run.verdict == want;
                let detail = (!passed).then(|| {
                    format!(
                        "expected {} for `{}`; kubectl said: {}",
                        want.label(),
                        run.command,
                        run.stderr
                            .trim()
                            .lines()
                            .last()
                            .unwrap_or(run.stdout.trim())
                    )
                });
                let kind = if want_allowed { "allowed" } else { "forbidden" };
                push(
                    format!("{kind}: {action}"),
                    passed,
                    run.verdict.label().to_string(),
                    detail,
                    None,
                );
            }
        }
    }
    k.last_token_use = Some(Instant::now());
    if results.iter().any(|r| !r.passed) {
        let _ = cluster.collect_logs(&art_dir.join("logs"));
        let _ = std::fs::copy(k.server.log(), art_dir.join("kanidmd.log"));
    }
    Ok(results)
}

/// kube-apiserver caches successful token authentications this long (`TokenSuccessCacheTTL`),
/// plus a margin.
const TOKEN_SUCCESS_CACHE: Duration = Duration::from_millis(10_500);

/// A fresh number for a Kanidm working directory in this lab.
fn lab_counter(dir: &Path) -> usize {
    (1..)
        .find(|n| !dir.join(format!("kanidm-{n}")).exists())
        .unwrap_or(1)
}

/// Log every person of the scenario in (once per Kanidm state): a person's first login in
/// the run walks Kanidm's pages, later ones restore their Kanidm session (see
/// `login::signins`). Returns per-login times.
async fn login_all(
    s: &LoadedScenario,
    k: &mut KanidmLab,
    lab: &Lab,
    art_dir: &Path,
    people: &[String],
) -> Result<Vec<(String, Duration)>> {
    let login = &s.scenario.login;
    let issuer = k.server.endpoint().issuer(&login.client.value);
    let origin = k.server.endpoint().origin.clone();
    let req = LoginRequest {
        issuer: &issuer,
        origin: &origin,
        client_id: &login.client.value,
        scopes: &login.scopes,
        redirect_port: login.redirect_port,
        redirect_path: login.redirect_path.as_deref().unwrap_or("/callback"),
        spki_pin: &lab.pki.kanidm_spki_sha256,
        artifacts: art_dir,
    };
    let done = k.tokens.entry(k.fingerprint.clone()).or_default();
    let todo: Vec<String> = people
        .iter()
        .filter(|p| !done.contains_key(*p))
        .cloned()
        .collect();
    // One after another, in the one shared browser (its cookies are one person's at a
    // time); post 2 also pins the redirect listener to one port.
    let mut times = Vec::new();
    for p in &todo {
        let secrets = k
            .provisioned
            .secrets
            .get(p)
            .ok_or_else(|| anyhow!("no credentials for {p}"))?;
        let passkey = s
            .person(p)
            .is_some_and(|x| x.credential == CredentialKind::Passkey);
        let person = Person {
            name: p.as_str(),
            secrets,
            passkey,
        };
        let t = Instant::now();
        let (out, kind) = k
            .signins
            .login(&lab.browser, &lab.http, &req, &person)
            .await?;
        k.tokens
            .entry(k.fingerprint.clone())
            .or_default()
            .insert(p.clone(), out);
        let label = match kind {
            Kind::First => p.clone(),
            Kind::SingleSignOn => format!("{p} (sso)"),
        };
        times.push((label, t.elapsed()));
    }
    Ok(times)
}

/// Options of `cargo xtask e2e`.
pub struct E2eOptions {
    pub scenarios: Vec<LoadedScenario>,
    pub k8s: Vec<K8sVersion>,
    pub backend: String,
    pub artifacts: PathBuf,
    pub keep: bool,
    pub fresh_kanidm: bool,
    pub kind: crate::cluster::kind::KindSettings,
    /// On kind, run structured-config scenarios before flag ones (fewer API server restarts).
    pub order_for_speed: bool,
}

/// The lab's working directory (keys, tokens, databases): removed on drop unless kept.
pub struct LabDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl LabDir {
    pub fn create(keep: bool) -> Result<LabDir> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("kanidm-k8s-lab-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(LabDir { path, keep })
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Copy what a user needs to debug a run: logs, rendered configs, screenshots, page HTML.
/// Never keys, tokens, kubeconfigs, databases, the browser profiles or symlinked UI assets.
fn copy_artifacts(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let n = name.to_string_lossy();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            if matches!(
                n.as_ref(),
                "pki" | "profiles" | "etcd" | "core" | "tokens" | "data"
            ) {
                continue;
            }
            copy_artifacts(&p, &to.join(&name));
            continue;
        }
        let secret = n.ends_with(".kubeconfig")
            || n.contains("key")
            || n.contains(".db")
            || n.ends_with(".sock")
            || n == "lab.json";
        if !secret {
            let _ = std::fs::create_dir_all(to);
            let _ = std::fs::copy(&p, to.join(&name));
        }
    }
}

pub async fn e2e(opts: E2eOptions) -> Result<RunReport> {
    let progress = Progress::default();
    let labdir = LabDir::create(opts.keep)?;
    if opts.keep {
        progress.phase(&format!("lab directory (kept): {}", labdir.path.display()));
    }
    let total = Instant::now();
    let mut all = RunReport {
        results: Vec::new(),
        timings: Timings::default(),
        artifacts: opts.artifacts.clone(),
        versions: BTreeMap::new(),
    };
    for v in &opts.k8s {
        let t = Instant::now();
        progress.phase(&format!(
            "Kubernetes {v} on the {} backend: starting lab",
            opts.backend
        ));
        let dir = labdir.path.join(format!("k8s-{v}"));
        let lab = Lab::new(&dir).await?;
        let mut scenarios = opts.scenarios.clone();
        if opts.backend == "kind" && opts.order_for_speed {
            crate::scenario::order_for_fewest_switches(&mut scenarios);
        }
        let run_opts = RunOptions {
            scenarios,
            k8s: *v,
            artifacts: opts.artifacts.join(format!("k8s-{v}")),
            fresh_kanidm: opts.fresh_kanidm,
        };
        let mut report = match opts.backend.as_str() {
            "local" => {
                let mut cluster =
                    crate::cluster::local::LocalControlPlane::start(&dir.join("cluster"), &lab.pki)
                        .await?;
                all.timings.add("control plane (etcd) started", t.elapsed());
                let r = run_scenarios(run_opts, &mut cluster, &lab, &progress).await;
                for (i, d) in cluster.ready_times.iter().enumerate() {
                    all.timings
                        .add(&format!("api server start #{} to /readyz", i + 1), *d);
                }
                cluster.shutdown().await;
                r?
            }
            "kind" => {
                let mut cluster = crate::cluster::kind::KindCluster::create(
                    &dir.join("cluster"),
                    &lab.pki,
                    *v,
                    &opts.kind,
                    &progress,
                )
                .await?;
                for n in &cluster.notes {
                    progress.phase(&format!("note: {n}"));
                }
                all.timings.add("kind cluster created", t.elapsed());
                let r = run_scenarios(run_opts, &mut cluster, &lab, &progress).await;
                let _ = cluster.collect_logs(&opts.artifacts.join(format!("k8s-{v}")).join("logs"));
                cluster.shutdown().await;
                for (what, d) in &cluster.timings {
                    all.timings.add(what, *d);
                }
                r?
            }
            other => anyhow::bail!("unknown backend `{other}`; use local or kind"),
        };
        copy_artifacts(&dir, &opts.artifacts.join(format!("k8s-{v}")));
        if opts.k8s.len() > 1 {
            for r in &mut report.results {
                r.scenario = format!("{}@{v}", r.scenario);
            }
            // Each minor ran its own API server (and, on kind, its own Kanidm container).
            report.versions = std::mem::take(&mut report.versions)
                .into_iter()
                .map(|(k, val)| (format!("{k}@{v}"), val))
                .collect();
        }
        all.results.append(&mut report.results);
        all.timings.entries.append(&mut report.timings.entries);
        all.versions.append(&mut report.versions);
    }
    all.timings.add("total", total.elapsed());
    crate::report::write_junit(&all.results, &opts.artifacts.join("junit.xml"), "e2e")?;
    std::fs::write(
        opts.artifacts.join("summary.txt"),
        crate::report::summary_table(&all.results),
    )?;
    std::fs::write(opts.artifacts.join("timings.txt"), all.timings.render())?;
    Ok(all)
}
