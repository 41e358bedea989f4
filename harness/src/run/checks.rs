//! One person's expectation observed and judged, and the logins that give the tokens:
//! shared by a scenario's own expectations (`scenario.rs`) and its steps (`steps.rs`).

use super::kanidm_lab::KanidmLab;
use crate::check::CheckResult;
use crate::check::expect::{Observed401, observe_401, wait_oidc_ready};
use crate::check::judge::{self, Judgement};
use crate::check::kubectl::{self, Kubeconfig};
use crate::cluster::AuthSetup;
use crate::cluster::{ClusterBackend, kubeconfig};
use crate::explain;
use crate::login::flow::{LoginOutcomeActual, LoginRequest, Person};
use crate::login::signins::Kind;
use crate::render::K8sVersion;
use crate::render::LabFacts;
use crate::scenario::LoadedScenario;
use crate::scenario::model::{CredentialKind, Expectation, LoginVia};
use crate::timings::Timings;
use anyhow::{Result, anyhow};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// kube-apiserver caches successful token authentications this long (`TokenSuccessCacheTTL`),
/// plus a margin.
const TOKEN_SUCCESS_CACHE: Duration = Duration::from_millis(10_500);

/// How long tokens last presented at `k.last_token_use` may still be answered from the API
/// server's success cache.
pub(super) fn token_cache_left(k: &KanidmLab) -> Duration {
    k.last_token_use
        .map(|t| (t + TOKEN_SUCCESS_CACHE).saturating_duration_since(Instant::now()))
        .unwrap_or_default()
}

/// Wait until tokens last presented at `k.last_token_use` are out of the API server's
/// success cache (nothing to wait for once 10 s have passed); `why` goes to the progress line.
pub(super) async fn wait_token_cache(
    k: &KanidmLab,
    why: &str,
    progress: &crate::progress::Progress,
    timings: &mut Timings,
) {
    let wait = token_cache_left(k);
    if !wait.is_zero() {
        progress.step(&format!(
            "waiting {:.1} s for the API server's token cache ({why})",
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        timings.add("token cache wait", wait);
    }
}

/// RBAC changes reach the authorizer's cache within moments: an allowed/forbidden answer
/// that differs is retried this long.
const RBAC_SETTLE: Duration = Duration::from_secs(5);

/// Where one scenario's files go: secrets stay in the lab, debugging help goes to artifacts.
pub(super) struct Dirs {
    pub(super) secret: PathBuf,
    pub(super) artifacts: PathBuf,
    /// kubectl's discovery cache, shared by the lab's scenarios (keyed by API server).
    pub(super) kubectl_cache: PathBuf,
}

/// Collects one person's check results.
pub(super) struct Recorder {
    scenario: String,
    person: String,
    /// Put before every check name (a step and where its token came from).
    pub(super) prefix: String,
    started: Instant,
    pub(super) results: Vec<CheckResult>,
}

impl Recorder {
    pub(super) fn new(s: &LoadedScenario, person: &str) -> Self {
        Recorder {
            scenario: s.name.clone(),
            person: person.to_string(),
            prefix: String::new(),
            started: Instant::now(),
            results: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, check: String, j: Judgement, apiserver_line: Option<String>) {
        self.results.push(CheckResult {
            cell: String::new(),
            scenario: self.scenario.clone(),
            person: self.person.clone(),
            check: format!("{}{check}", self.prefix),
            passed: j.passed,
            actual: j.actual,
            detail: j.detail,
            apiserver_line,
            seconds: self.started.elapsed().as_secs_f64(),
        });
    }
}

/// What `explain` is given to cross-check the API server (`--explain-check`): the
/// authentication the API server runs with, as a user would hand it over.
#[derive(Clone)]
pub(super) struct ExplainCheck {
    auth: explain::AuthSource,
    k8s: K8sVersion,
}

impl ExplainCheck {
    /// The rendered config as the API server reads it; for flags, `--oidc-ca-file` points at
    /// the same CA on this machine (on kind the API server's path is inside the node).
    pub(super) fn of(
        auth: &AuthSetup,
        apiserver_ca_path: &str,
        host_ca: &Path,
        k8s: K8sVersion,
    ) -> ExplainCheck {
        let source = match auth {
            AuthSetup::Structured { config_yaml } => explain::AuthSource::ConfigText {
                text: config_yaml.clone(),
                origin: "the rendered authentication-config.yaml".into(),
            },
            AuthSetup::Flags(flags) => explain::AuthSource::Flags(explain::source::flags_here(
                flags,
                apiserver_ca_path,
                host_ca,
            )),
        };
        ExplainCheck { auth: source, k8s }
    }
}

/// One person's expectation: login, then (with a token) 401 cause, whoami, allowed,
/// forbidden; with `explain`, its verdict on the same token against the API server's.
#[allow(clippy::too_many_arguments)]
pub(super) async fn check_expectation(
    cluster: &impl ClusterBackend,
    e: &Expectation,
    outcome: &LoginOutcomeActual,
    kept_from: Option<&str>,
    facts: &LabFacts,
    dirs: &Dirs,
    oidc_ready: &mut bool,
    explain_with: Option<&ExplainCheck>,
    rec: &mut Recorder,
    timings: &mut Timings,
) -> Result<()> {
    let (what, mut login) = match kept_from {
        Some(from) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            ("token", judge::kept_token(outcome, from, now))
        }
        None => ("login", judge::login(e.login, outcome)),
    };
    if let Some(d) = &mut login.detail {
        d.push_str(&format!("; artifacts in {}", dirs.artifacts.display()));
    }
    let passed = login.passed;
    rec.push(what.into(), login, None);
    let LoginOutcomeActual::Token(token) = outcome else {
        return Ok(());
    };
    if !passed {
        return Ok(());
    }
    let kubeconfig_path = person_kubeconfig(cluster, token, dirs, &rec.person)?;
    if !*oidc_ready {
        let t = Instant::now();
        wait_oidc_ready(cluster, &kubeconfig_path).await?;
        timings.add("oidc ready after api server", t.elapsed());
        *oidc_ready = true;
    }
    if let Some(want) = &e.unauthorized {
        let seen = observe_401(cluster, &kubeconfig_path).await?;
        let j = judge::unauthorized(want.cause.value, &seen.run.verdict, seen.cause);
        let line = seen.err.clone().map(|e| format!("err=\"{e}\""));
        rec.push(format!("unauthorized: {}", want.cause.value), j, line);
        if let Some(x) = explain_with {
            cross_check(x, &token.id_token, seen, rec).await;
        }
        return Ok(());
    }
    if let Some(w) = &e.whoami {
        let t = Instant::now();
        let run = kubectl::whoami(cluster.kubectl(), &kubeconfig_path).await?;
        if token.kubelogin.is_some() {
            timings.add("kubectl auth whoami through kubelogin's cache", t.elapsed());
        }
        let mut j = judge::whoami(&run, w, &facts.values);
        let mut line = None;
        // An unexpected 401: the API server's own reason, as for an `unauthorized` check.
        if run.verdict == kubectl::Verdict::Unauthorized {
            let seen = observe_401(cluster, &kubeconfig_path).await?;
            if let Some(c) = seen.cause {
                let why = format!(
                    "the API server rejected the token: cause {} ({})",
                    c.as_str(),
                    c.hint()
                );
                j.detail = Some(match j.detail.take() {
                    Some(d) => format!("{d}; {why}"),
                    None => why,
                });
            }
            line = seen.err.map(|e| format!("err=\"{e}\""));
        }
        rec.push("whoami".into(), j, line);
    }
    let actions: Vec<(bool, &crate::scenario::action::Action)> =
        [(true, &e.allowed), (false, &e.forbidden)]
            .into_iter()
            .flat_map(|(want, list)| list.iter().map(move |a| (want, &a.value)))
            .collect();
    // The actions only ask (reads, `--dry-run=server`, `auth can-i`): they run side by
    // side, at most ACTIONS_AT_ONCE, and are reported in the scenario's order. Through
    // kubelogin, one after another: each kubectl runs kubelogin on the one locked cache.
    let at_once = if token.kubelogin.is_some() {
        1
    } else {
        ACTIONS_AT_ONCE
    };
    let mut runs = Vec::with_capacity(actions.len());
    for batch in actions.chunks(at_once) {
        let mut set = tokio::task::JoinSet::new();
        for (i, &(want_allowed, action)) in batch.iter().enumerate() {
            let kubectl = cluster.kubectl().to_path_buf();
            let kubeconfig = kubeconfig_path.clone();
            let args = kubectl::args_for(action);
            set.spawn(async move {
                (
                    i,
                    observe_access(&kubectl, &kubeconfig, &args, want_allowed).await,
                )
            });
        }
        let mut done: Vec<Option<Result<kubectl::KubectlRun>>> =
            (0..batch.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            let (i, run) = joined.map_err(|e| anyhow!("a kubectl check task failed: {e}"))?;
            done[i] = Some(run);
        }
        for run in done {
            runs.push(run.ok_or_else(|| anyhow!("a kubectl check did not report"))??);
        }
    }
    for ((want_allowed, action), run) in actions.iter().zip(&runs) {
        let kind = if *want_allowed {
            "allowed"
        } else {
            "forbidden"
        };
        rec.push(
            format!("{kind}: {action}"),
            judge::access(*want_allowed, run),
            None,
        );
    }
    if let Some(x) = explain_with {
        let seen = observe_401(cluster, &kubeconfig_path).await?;
        cross_check(x, &token.id_token, seen, rec).await;
    }
    Ok(())
}

/// How many of one person's allowed/forbidden kubectl runs go at once (2 cores: more only
/// queue up).
const ACTIONS_AT_ONCE: usize = 4;

/// One allowed/forbidden action through kubectl; an answer other than the wanted one is
/// asked again for [`RBAC_SETTLE`] (the authorizer's cache catches up with new bindings).
async fn observe_access(
    kubectl: &Path,
    kubeconfig: &Kubeconfig,
    args: &[String],
    want_allowed: bool,
) -> Result<kubectl::KubectlRun> {
    let deadline = Instant::now() + RBAC_SETTLE;
    let mut run = kubectl::run(kubectl, kubeconfig, args).await?;
    while judge::worth_retrying(want_allowed, &run) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        run = kubectl::run(kubectl, kubeconfig, args).await?;
    }
    Ok(run)
}

/// The person's kubeconfig for this token: the token itself, or kubelogin's exec block
/// (every kubectl then runs kubelogin, which answers from this token's cache).
fn person_kubeconfig(
    cluster: &impl ClusterBackend,
    token: &crate::login::oidc::VerifiedToken,
    dirs: &Dirs,
    person: &str,
) -> Result<Kubeconfig> {
    let path = dirs.secret.join(format!("{person}.kubeconfig"));
    let (user, auth, exec_path) = match &token.kubelogin {
        Some(k) => (
            k.user.as_str(),
            kubeconfig::UserAuth::ExecBlock {
                api_version: &k.api_version,
                command: &k.command,
                args: &k.args,
                interactive_mode: k.interactive_mode.as_deref(),
            },
            Some(k.exec_path.clone()),
        ),
        None => (person, kubeconfig::UserAuth::Token(&token.id_token), None),
    };
    kubeconfig::write(
        &path,
        cluster.server_url(),
        &cluster.server_ca_file(),
        user,
        auth,
    )?;
    Ok(Kubeconfig {
        path,
        exec_path,
        cache_dir: dirs.kubectl_cache.clone(),
    })
}

/// `explain` on the token the API server just answered, judged against that answer.
async fn cross_check(x: &ExplainCheck, token: &str, seen: Observed401, rec: &mut Recorder) {
    let req = explain::Request {
        token: explain::TokenSource::Raw(token.to_string()),
        auth: x.auth.clone(),
        // The config carries its own CA (flags: the same file on this machine).
        ca: None,
        k8s: x.k8s,
        offline: false,
    };
    let j = match explain::explain(&req).await {
        Ok(e) => explain::agree::explain_agrees(&seen.run, seen.cause, &e.explanation.verdict),
        Err(e) => explain::agree::explain_refused(&e.0),
    };
    let line = seen.err.map(|e| format!("err=\"{e}\""));
    rec.push("explain agrees".into(), j, line);
}

fn issuer_and_origin(s: &LoadedScenario, k: &KanidmLab) -> (String, String) {
    let endpoint = k.server.endpoint();
    (
        endpoint.issuer(&s.scenario.login.client.value),
        endpoint.origin.clone(),
    )
}

/// The scenario's login settings against this Kanidm.
fn login_request<'a>(
    s: &'a LoadedScenario,
    site: &'a super::kanidm_lab::KanidmSite<'_>,
    issuer: &'a str,
    origin: &'a str,
    art_dir: &'a Path,
) -> LoginRequest<'a> {
    let login = &s.scenario.login;
    LoginRequest {
        issuer,
        origin,
        client_id: &login.client.value,
        scopes: &login.scopes,
        redirect_port: login.redirect_port,
        redirect_path: login.redirect_path.as_deref().unwrap_or("/callback"),
        spki_pin: &site.lab.pki.kanidm_spki_sha256,
        artifacts: art_dir,
    }
}

fn person_of<'a>(
    s: &LoadedScenario,
    provisioned: &'a crate::kanidm::Provisioned,
    p: &'a str,
) -> Result<Person<'a>> {
    let secrets = provisioned
        .secrets
        .get(p)
        .ok_or_else(|| anyhow!("no credentials for {p}"))?;
    let passkey = s
        .person(p)
        .is_some_and(|x| x.credential == CredentialKind::Passkey);
    Ok(Person {
        name: p,
        secrets,
        passkey,
    })
}

/// `n` more tokens for `person`, each from a login of its own (single sign-on), kept out of
/// the Kanidm lab's tokens: a later step presents each to the API server for the first
/// time (see `scenario::steps::spare_tokens`). Only the lab's own logins: kubelogin would
/// answer from its token cache.
pub(super) async fn spare_logins(
    s: &LoadedScenario,
    k: &mut KanidmLab,
    site: &super::kanidm_lab::KanidmSite<'_>,
    art_dir: &Path,
    person: &str,
    n: usize,
) -> Result<Vec<LoginOutcomeActual>> {
    if s.scenario.login.via == LoginVia::Kubelogin {
        return Ok(Vec::new());
    }
    let (issuer, origin) = issuer_and_origin(s, k);
    let req = login_request(s, site, &issuer, &origin, art_dir);
    let mut out = Vec::new();
    for _ in 0..n {
        let who = person_of(s, &k.provisioned, person)?;
        let (got, _) = k
            .signins
            .login(&site.lab.browser, &site.lab.http, &req, &who)
            .await?;
        out.push(got);
    }
    Ok(out)
}

/// Log every person of the scenario in (once per Kanidm state): a person's first login in
/// the run walks Kanidm's pages, later ones restore their Kanidm session (see
/// `login::signins`). Returns per-login times.
pub(super) async fn login_all(
    s: &LoadedScenario,
    k: &mut KanidmLab,
    site: &super::kanidm_lab::KanidmSite<'_>,
    art_dir: &Path,
    people: &[String],
) -> Result<Vec<(String, Duration)>> {
    let lab = site.lab;
    let (issuer, origin) = issuer_and_origin(s, k);
    let req = login_request(s, site, &issuer, &origin, art_dir);
    // A token kept from an earlier scenario is reused only while it has a minute left
    // (Kanidm's id_tokens live 15 minutes; a long suite outlives them).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let usable = |o: &LoginOutcomeActual| match o {
        LoginOutcomeActual::Token(t) => t.expires_at > now + 60,
        _ => true,
    };
    let todo: Vec<String> = people
        .iter()
        .filter(|p| {
            k.current_tokens()
                .and_then(|done| done.get(*p))
                .is_none_or(|o| !usable(o))
        })
        .cloned()
        .collect();
    // One after another, in the one shared browser (its cookies are one person's at a
    // time); post 2 also pins the redirect listener to one port.
    let mut times = Vec::new();
    for p in &todo {
        if s.scenario.login.via == LoginVia::Kubelogin {
            let t = Instant::now();
            let (out, kind) = super::kubelogin_login::login(s, k, site, art_dir, p).await?;
            k.tokens
                .entry(k.fingerprint.clone())
                .or_default()
                .insert(p.clone(), out);
            let label = match kind {
                Kind::First => format!("{p} (kubelogin)"),
                Kind::SingleSignOn => format!("{p} (kubelogin, sso)"),
            };
            times.push((label, t.elapsed()));
            continue;
        }
        let person = person_of(s, &k.provisioned, p)?;
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
