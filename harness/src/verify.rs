//! `cargo xtask verify`: a scenario's `expect:` against a cluster and Kanidm someone already
//! set up. Nothing is provisioned or changed: each person's kubeconfig (typically a
//! kubelogin exec entry) or token is used as is; `whoami` is a SelfSubjectReview, reads are
//! `kubectl auth can-i`, mutations are `--dry-run=server`. A 401 is diagnosed by `explain`
//! (the user rarely has the API server's log at hand).

use crate::check::CheckResult;
use crate::check::judge::{self, Judgement};
use crate::check::kubectl::{self, KubectlRun, Verdict};
use crate::explain::{self, AuthSource, TokenSource};
use crate::render::K8sVersion;
use crate::scenario::LoadedScenario;
use crate::scenario::action::Action;
use crate::scenario::cause::Cause;
use crate::scenario::model::{Expectation, LoginOutcome};
use crate::scenario::placeholder::Values;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How one person reaches the cluster.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Their own kubeconfig (exec plugin, token, …): the current context's user, or the
    /// named user entry (as `kubectl --user`, e.g. post 2's `oidc`).
    Kubeconfig { path: PathBuf, user: Option<String> },
    /// A token file, used with the cluster of `VerifyOptions::cluster`.
    Token(PathBuf),
}

impl Credential {
    fn describe(&self) -> &'static str {
        match self {
            Credential::Kubeconfig { .. } => "from the kubeconfig",
            Credential::Token(_) => "from the token file",
        }
    }
}

pub struct VerifyOptions {
    pub scenario: LoadedScenario,
    pub people: BTreeMap<String, Credential>,
    /// The cluster (server and CA) for people given as tokens.
    pub cluster: Option<PathBuf>,
    /// The API server's authentication, for `explain` to diagnose a 401.
    pub auth: Option<AuthSource>,
    pub ca: Option<PathBuf>,
    pub k8s: K8sVersion,
    pub kubectl: PathBuf,
    /// Where the token kubeconfigs go (0700, removed by the caller).
    pub scratch: PathBuf,
}

pub struct VerifyReport {
    pub results: Vec<CheckResult>,
    /// Expectations verify cannot check, and why.
    pub notes: Vec<String>,
}

/// kubectl arguments that only ask: reads as `auth can-i`; deletes and namespace creation
/// as server-side dry runs (authorization runs, nothing is stored); other verbs `auth can-i`.
pub fn read_only_args(action: &Action) -> Vec<String> {
    match action.verb.as_str() {
        "delete" => kubectl::args_for(action),
        "create" if matches!(action.resource.as_str(), "namespace" | "namespaces" | "ns") => {
            kubectl::args_for(action)
        }
        _ => kubectl::can_i_args(action),
    }
}

/// The values a scenario's `${…}` stand for, read from the person's own token: the Kanidm
/// domain is the part of `preferred_username` after `@` (Kanidm's SPN), `${uuid:<person>}`
/// is `sub`, `${issuer:<client>}` is `iss`.
fn values_from(token: &explain::token::Jwt, person: &str, client: &str) -> Values {
    let spn = token.claim_str("preferred_username").unwrap_or_default();
    let domain = spn.split_once('@').map(|(_, d)| d).unwrap_or_default();
    let iss = token.claim_str("iss").unwrap_or_default().to_string();
    let origin = iss
        .split_once("/oauth2/openid/")
        .map(|(o, _)| o.to_string())
        .unwrap_or_default();
    let mut v = Values {
        domain: domain.to_string(),
        origin,
        ..Values::default()
    };
    v.issuers.insert(client.to_string(), iss);
    if let Some(sub) = token.claim_str("sub") {
        v.uuids.insert(person.to_string(), sub.to_string());
    }
    v
}

pub async fn verify(opts: &VerifyOptions) -> Result<VerifyReport> {
    let s = &opts.scenario;
    let mut results = Vec::new();
    let mut notes = Vec::new();
    // kubectl's discovery cache for this run, removed with it: `~/.kube/cache` stays the
    // user's own.
    let cache = tempfile::Builder::new()
        .prefix("kanidm-k8s-lab-verify-")
        .tempdir()
        .context("creating a temporary directory for kubectl's cache")?;
    if !s.scenario.steps.is_empty() {
        notes.push(format!(
            "{}: its {} step(s) change Kanidm and the API server; verify runs only the top-level expect",
            s.name,
            s.scenario.steps.len()
        ));
    }
    for e in &s.scenario.expect {
        let person = &e.person.value;
        let started = Instant::now();
        let mut push = |check: String, j: Judgement, line: Option<String>| {
            results.push(CheckResult {
                cell: String::new(),
                scenario: s.name.clone(),
                person: person.clone(),
                check,
                passed: j.passed,
                actual: j.actual,
                detail: j.detail,
                apiserver_line: line,
                seconds: started.elapsed().as_secs_f64(),
            });
        };
        if e.login != LoginOutcome::Ok {
            notes.push(format!(
                "{person}: `login: {:?}` needs a browser login against Kanidm; verify checks tokens people already have",
                e.login
            ));
            continue;
        }
        let Some(cred) = opts.people.get(person) else {
            notes.push(format!(
                "{person}: no --user {person}=<kubeconfig> or --token {person}=<file> given"
            ));
            continue;
        };
        let user_flag: Vec<String> = match cred {
            Credential::Kubeconfig { user: Some(u), .. } => vec![format!("--user={u}")],
            _ => Vec::new(),
        };
        let (kubeconfig, token) = match prepare(opts, person, cred).await {
            Ok(x) => x,
            Err(err) => {
                push("credentials".into(), credentials_unusable(&err), None);
                continue;
            }
        };
        let jwt = explain::token::decode(&token);
        push("token".into(), presented_token(&jwt, cred.describe()), None);
        let jwt = jwt.ok();
        let values = jwt
            .as_ref()
            .map(|j| values_from(j, person, &s.scenario.login.client.value))
            .unwrap_or_default();
        let diagnose = || diagnosis(opts, &token);
        let kc = Kubectl {
            bin: &opts.kubectl,
            kubeconfig: &kubeconfig,
            user_flag: &user_flag,
            cache: cache.path(),
        };
        check_one(e, &kc, &values, diagnose, &mut push).await?;
    }
    Ok(VerifyReport { results, notes })
}

/// kubectl as this person runs it.
struct Kubectl<'a> {
    bin: &'a Path,
    kubeconfig: &'a Path,
    /// `--user=<entry>` when a kubeconfig user entry was named.
    user_flag: &'a [String],
    /// kubectl's `--cache-dir`.
    cache: &'a Path,
}

impl Kubectl<'_> {
    async fn run(&self, args: &[String]) -> Result<KubectlRun> {
        let mut all = self.user_flag.to_vec();
        all.extend_from_slice(args);
        let kubeconfig = kubectl::Kubeconfig::file(self.kubeconfig, self.cache);
        kubectl::run(self.bin, &kubeconfig, &all).await
    }
}

async fn check_one<F, Fut>(
    e: &Expectation,
    kc: &Kubectl<'_>,
    values: &Values,
    diagnose: F,
    push: &mut impl FnMut(String, Judgement, Option<String>),
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Diagnosis>,
{
    let whoami: Vec<String> = ["auth", "whoami", "-o", "json"].map(String::from).to_vec();
    let run = kc.run(&whoami).await?;
    if let Some(want) = &e.unauthorized {
        let d = if run.verdict == Verdict::Unauthorized {
            diagnose().await
        } else {
            Diagnosis::default()
        };
        let mut j = judge::unauthorized(want.cause.value, &run.verdict, d.cause);
        if run.verdict == Verdict::Unauthorized && d.cause.is_none() {
            j.detail = Some(d.why.clone());
            j.actual = "Unauthorized (401), cause not diagnosed".into();
        }
        push(format!("unauthorized: {}", want.cause.value), j, d.line);
        return Ok(());
    }
    // Any 401 from here on is a surprise: explain says why.
    let mut diagnosed: Option<Diagnosis> = None;
    let judged =
        |j: Judgement, r: &KubectlRun, d: &Option<Diagnosis>| -> (Judgement, Option<String>) {
            if r.verdict != Verdict::Unauthorized {
                return (j, None);
            }
            let d = d.clone().unwrap_or_default();
            let mut j = j;
            j.detail = Some(format!("{}; {}", j.detail.unwrap_or_default(), d.why));
            (j, d.line)
        };
    if run.verdict == Verdict::Unauthorized {
        diagnosed = Some(diagnose().await);
    }
    if let Some(w) = &e.whoami {
        let (j, line) = judged(judge::whoami(&run, w, values), &run, &diagnosed);
        push("whoami".into(), j, line);
    }
    for (want_allowed, list) in [(true, &e.allowed), (false, &e.forbidden)] {
        for a in list {
            let r = kc.run(&read_only_args(&a.value)).await?;
            if r.verdict == Verdict::Unauthorized && diagnosed.is_none() {
                diagnosed = Some(diagnose().await);
            }
            let kind = if want_allowed { "allowed" } else { "forbidden" };
            let (j, line) = judged(judge::access(want_allowed, &r), &r, &diagnosed);
            push(format!("{kind}: {}", a.value), j, line);
        }
    }
    Ok(())
}

/// `explain`'s reading of a 401.
#[derive(Debug, Clone, Default)]
struct Diagnosis {
    cause: Option<Cause>,
    /// For the report: the cause and its hint, or why there is none.
    why: String,
    /// The `err` text the API server logged (as explain words it).
    line: Option<String>,
}

async fn diagnosis(opts: &VerifyOptions, token: &str) -> Diagnosis {
    let Some(auth) = &opts.auth else {
        return Diagnosis {
            why: "no diagnosis: give the API server's authentication (--auth-config, --oidc-flags or --manifest) and explain says why".into(),
            ..Diagnosis::default()
        };
    };
    let req = explain::Request {
        token: TokenSource::Raw(token.to_string()),
        auth: auth.clone(),
        ca: opts.ca.clone(),
        k8s: opts.k8s,
        offline: false,
    };
    match explain::explain(&req).await {
        Ok(x) => match x.explanation.verdict {
            explain::checks::Verdict::Rejected { err, cause, .. } => Diagnosis {
                cause,
                why: format!(
                    "explain: {}",
                    cause.map_or("no named cause".to_string(), |c| format!(
                        "cause {c}: {}",
                        c.hint()
                    ))
                ),
                line: Some(format!(
                    "err=\"{err}\" (in explain's words: verify does not read the API server's log)"
                )),
            },
            other => Diagnosis {
                why: format!(
                    "explain: {} (does the configuration given match the API server's?)",
                    explain::verdict_line(&other)
                ),
                ..Diagnosis::default()
            },
        },
        Err(e) => Diagnosis {
            why: format!("explain could not use its input: {e}"),
            ..Diagnosis::default()
        },
    }
}

/// The kubeconfig to run kubectl with, and the token it presents.
async fn prepare(
    opts: &VerifyOptions,
    person: &str,
    cred: &Credential,
) -> Result<(PathBuf, String), String> {
    match cred {
        Credential::Kubeconfig { path, user } => {
            let token = explain::token::from_kubeconfig(path, None, user.as_deref())
                .await
                .map_err(|e| e.0)?;
            Ok((path.clone(), token))
        }
        Credential::Token(file) => {
            let text = explain::token::read_input(file).map_err(|e| e.0)?;
            let token = explain::token::extract(&text).map_err(|e| e.0)?;
            let cluster = opts.cluster.as_ref().ok_or_else(|| {
                format!("--token {person}=… needs --cluster <kubeconfig> for the API server's address and CA")
            })?;
            let path = opts.scratch.join(format!("{person}.kubeconfig"));
            token_kubeconfig(cluster, &token, &path).map_err(|e| format!("{e:#}"))?;
            Ok((path, token))
        }
    }
}

/// A copy of `cluster`'s kubeconfig whose current context's user presents `token`
/// (mode 0600).
fn token_kubeconfig(cluster: &Path, token: &str, out: &Path) -> Result<()> {
    let text = crate::input_file::read_text(cluster, 4 << 20, "the kubeconfig")?;
    let mut cfg: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a kubeconfig: {}",
            cluster.display(),
            crate::input_file::yaml_error(&e)
        )
    })?;
    let ctx_name = cfg["current-context"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ctx = cfg["contexts"]
        .as_array()
        .and_then(|c| c.iter().find(|x| x["name"] == ctx_name.as_str()))
        .cloned()
        .with_context(|| format!("{}: no current context", cluster.display()))?;
    let cluster_name = ctx["context"]["cluster"].clone();
    // Relative paths (certificate-authority) stay valid from the copy's folder.
    let base = cluster.parent().unwrap_or(Path::new(".")).canonicalize()?;
    let mut clusters = cfg["clusters"].clone();
    if let Some(list) = clusters.as_array_mut() {
        for c in list.iter_mut() {
            if let Some(ca) = c["cluster"]["certificate-authority"].as_str()
                && !ca.starts_with('/')
            {
                c["cluster"]["certificate-authority"] = base.join(ca).to_string_lossy().into();
            }
        }
    }
    cfg = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "verify", "user": {"token": token}}],
        "contexts": [{"name": "verify", "context": {"cluster": cluster_name, "user": "verify"}}],
        "current-context": "verify",
    });
    let body = serde_json::to_string_pretty(&cfg)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)?;
    f.write_all(body.as_bytes())?;
    Ok(())
}

/// The token a person's credentials present: a JWT (what an OIDC authenticator reads),
/// with its algorithm and expiry, like the e2e `login` line.
fn presented_token(
    jwt: &Result<explain::token::Jwt, explain::InputError>,
    from: &str,
) -> Judgement {
    match jwt {
        Ok(t) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let exp = t.claim_time("exp").unwrap_or(0);
            Judgement::pass(format!(
                "token ({}) {from}, expires {}",
                t.alg,
                explain::checks::relative(exp - now)
            ))
        }
        Err(e) => Judgement::fail(
            format!("no JWT {from}"),
            format!("{e}; an OIDC authenticator only reads JWTs"),
        ),
    }
}

/// `verify` could not get a token out of a person's credentials.
fn credentials_unusable(why: &str) -> Judgement {
    Judgement::fail("credentials unusable", why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ask_and_mutations_dry_run() {
        let a = |t: &str| read_only_args(&Action::parse(t).unwrap());
        assert_eq!(a("list pods -A"), ["auth", "can-i", "list", "pods", "-A"]);
        assert_eq!(a("get namespaces"), ["auth", "can-i", "get", "namespaces"]);
        assert_eq!(
            a("list secrets -n kube-system"),
            ["auth", "can-i", "list", "secrets", "-n", "kube-system"]
        );
        assert!(a("delete namespace scratch").contains(&"--dry-run=server".to_string()));
        assert!(a("create namespace x").contains(&"--dry-run=server".to_string()));
        assert_eq!(a("patch nodes"), ["auth", "can-i", "patch", "nodes"]);
    }
}
