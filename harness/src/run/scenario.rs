//! One scenario against the run's Kanidm and API server: Kanidm in the scenario's state,
//! the API server's authentication, logins, RBAC, then every expectation observed and judged.

use super::kanidm_lab::{self, KanidmLab, KanidmSite};
use crate::check::CheckResult;
use crate::cluster::{AuthSetup, ClusterBackend};
use crate::progress::Progress;
use crate::render::plan::auth_setup;
use crate::render::{self, K8sVersion, LabFacts};
use crate::scenario::LoadedScenario;
use crate::scenario::action::Scope;
use crate::timings::Timings;
use anyhow::{Context, Result, anyhow};
use std::path::Path;
use std::time::Instant;

use super::checks::{
    self, Dirs, ExplainCheck, Recorder, check_expectation, login_all, wait_token_cache,
};

/// Everything one run's scenarios share.
pub struct RunCtx<'a, C: ClusterBackend> {
    pub cluster: &'a mut C,
    pub site: KanidmSite<'a>,
    pub k8s: K8sVersion,
    /// The run's artifacts folder (per minor).
    pub artifacts: &'a Path,
    pub progress: &'a Progress,
    pub timings: Timings,
    pub kanidm: Option<KanidmLab>,
    /// Cross-check every token with `explain` (`--explain-check`).
    pub explain_check: bool,
    /// The Kanidm server the API servers prepared ahead were configured against.
    pub prepared_on: Option<u64>,
}

/// Run `s`; `next` are the scenarios that follow it on this API server, whose
/// authentication is started ahead where the backend can (see [`upcoming_auths`]).
pub async fn run_scenario<C: ClusterBackend>(
    ctx: &mut RunCtx<'_, C>,
    s: &LoadedScenario,
    next: &[LoadedScenario],
) -> Result<Vec<CheckResult>> {
    let RunCtx {
        cluster,
        site,
        k8s,
        artifacts,
        progress,
        timings,
        kanidm,
        explain_check,
        prepared_on,
    } = ctx;
    let k = kanidm_lab::prepare(s, site, kanidm, timings, progress).await?;
    let facts = k.facts(&site.lab.pki.ca_pem, cluster.ca_path_for_apiserver());
    let auth = auth_setup(s, &facts, *k8s)?;
    if *prepared_on != Some(k.instance) {
        cluster.discard_prepared().await;
    }
    // Started once this scenario's API server has done its start-up work, while it polls
    // its post-start hooks and the checks run: started beside it, they would slow the one
    // the scenario waits for (measured: the first start on a fresh etcd took 5.6 s
    // instead of 4.0 s).
    let upcoming = upcoming_auths(
        s,
        next,
        crate::cluster::local::MAX_PREPARED,
        |n| k.likely_serves(n, site.fresh_kanidm),
        |n| auth_setup(n, &facts, *k8s).ok(),
    );
    *prepared_on = Some(k.instance);
    let dirs = Dirs {
        secret: site.lab.dir.join("scenarios").join(&s.name),
        artifacts: artifacts.join("scenarios").join(&s.name),
        kubectl_cache: site.lab.dir.join("kubectl-cache"),
    };
    std::fs::create_dir_all(&dirs.secret)?;
    std::fs::create_dir_all(&dirs.artifacts)?;
    match &auth {
        AuthSetup::Structured { config_yaml } => std::fs::write(
            dirs.artifacts.join("authentication-config.yaml"),
            config_yaml,
        )?,
        AuthSetup::Flags(f) => std::fs::write(dirs.artifacts.join("oidc-flags.txt"), f.join("\n"))?,
    }
    configure_and_log_in(
        s,
        &mut **cluster,
        (&auth, &upcoming),
        k,
        site,
        &dirs,
        timings,
        progress,
    )
    .await?;
    apply_rbac(s, &**cluster, &facts, timings).await?;
    let explain_with = explain_check.then(|| {
        ExplainCheck::of(
            &auth,
            &cluster.ca_path_for_apiserver(),
            &site.lab.pki.ca_cert,
            *k8s,
        )
    });
    let mut results = Vec::new();
    let mut oidc_ready = false;
    for e in &s.scenario.expect {
        let outcome = k
            .current_tokens()
            .and_then(|t| t.get(&e.person.value))
            .cloned()
            .ok_or_else(|| anyhow!("no login result for {}", e.person.value))?;
        let mut rec = Recorder::new(s, &e.person.value);
        check_expectation(
            &**cluster,
            e,
            &outcome,
            None,
            &facts,
            &dirs,
            &mut oidc_ready,
            explain_with.as_ref(),
            &mut rec,
            timings,
        )
        .await?;
        results.append(&mut rec.results);
    }
    k.last_token_use = Some(Instant::now());
    if !s.scenario.steps.is_empty() {
        let initial = k.current_tokens().cloned().unwrap_or_default();
        let ctx = super::steps::StepCtx {
            cluster: &mut **cluster,
            site,
            k8s: *k8s,
            dirs: &dirs,
            timings,
            progress,
            explain: explain_with,
        };
        let mut more = super::steps::run_steps(ctx, s, k, initial).await?;
        results.append(&mut more);
    }
    if results.iter().any(|r| !r.passed) {
        let _ = cluster.collect_logs(&dirs.artifacts.join("logs")).await;
        let _ = std::fs::copy(k.server.log(), dirs.artifacts.join("kanidmd.log"));
    }
    Ok(results)
}

/// The authentication of the scenarios after `s` that will find this Kanidm as it is, in
/// order, distinct, at most `limit`: nothing after a scenario whose steps change Kanidm
/// beyond its state (events, a stop: the next one gets a fresh Kanidm), nor from one that
/// will not run on this server (`serves`) or whose authentication cannot be rendered yet
/// (`auth_of`: a placeholder for a person still to come).
fn upcoming_auths(
    s: &LoadedScenario,
    next: &[LoadedScenario],
    limit: usize,
    serves: impl Fn(&LoadedScenario) -> bool,
    auth_of: impl Fn(&LoadedScenario) -> Option<AuthSetup>,
) -> Vec<AuthSetup> {
    let mut out: Vec<AuthSetup> = Vec::new();
    if crate::scenario::steps::leaves_kanidm_dirty(s) {
        return out;
    }
    for n in next {
        if out.len() >= limit || !serves(n) {
            break;
        }
        let Some(a) = auth_of(n) else {
            break;
        };
        if !out.contains(&a) {
            out.push(a);
        }
        if crate::scenario::steps::leaves_kanidm_dirty(n) {
            break;
        }
    }
    out
}

/// The API server restart or reload and the browser logins do not depend on each other:
/// they overlap. (The API server starts after Kanidm serves the client's discovery
/// document, which it already does here: a failed first discovery is retried only after 10 s.)
/// The API servers of the `upcoming` configurations start once this one's start-up work is
/// done (the local backend: only its post-start hooks' 1 s polls left), or once it is ready.
#[allow(clippy::too_many_arguments)]
async fn configure_and_log_in<C: ClusterBackend>(
    s: &LoadedScenario,
    cluster: &mut C,
    (auth, upcoming): (&AuthSetup, &[AuthSetup]),
    k: &mut KanidmLab,
    site: &KanidmSite<'_>,
    dirs: &Dirs,
    timings: &mut Timings,
    progress: &Progress,
) -> Result<()> {
    let mut people: Vec<String> = s
        .scenario
        .expect
        .iter()
        .map(|e| e.person.value.clone())
        .collect();
    people.dedup();
    let t = Instant::now();
    let reuses_tokens = k
        .current_tokens()
        .is_some_and(|done| people.iter().any(|p| done.contains_key(p)));
    let configure = async {
        let mut wanted = vec![auth.clone()];
        wanted.extend(upcoming.iter().cloned());
        cluster.will_prepare(&wanted);
        cluster.configure_auth(auth).await?;
        if let Err(e) = cluster.prepare(&wanted).await {
            // Only a head start is lost: each scenario still starts what it needs.
            tracing::warn!("starting API servers ahead failed: {e:#}");
        }
        anyhow::Ok(())
    };
    let (configured, logins) =
        tokio::join!(configure, login_all(s, k, site, &dirs.artifacts, &people));
    configured.context("configuring the API server")?;
    let mut login_times = logins?;
    timings.add("api server configured", t.elapsed());
    // A token that succeeded under the old config is answered from the API server's cache
    // for 10 s after a reload in place; fresh tokens and restarted API servers are not.
    // Fresh tokens (single sign-on, well under a second each) usually beat the wait.
    if cluster.reloaded_in_place() && reuses_tokens {
        let reused: Vec<String> = people
            .iter()
            .filter(|p| k.current_tokens().is_some_and(|t| t.contains_key(*p)))
            .cloned()
            .collect();
        let wait = checks::token_cache_left(k);
        if relogin_beats_wait(s, reused.len(), wait) {
            progress.step(&format!(
                "fresh tokens for {} instead of waiting {:.1} s for the API server's token cache",
                reused.join(", "),
                wait.as_secs_f64()
            ));
            if let Some(t) = k.tokens.get_mut(&k.fingerprint) {
                t.retain(|p, _| !reused.contains(p));
            }
            login_times.extend(login_all(s, k, site, &dirs.artifacts, &reused).await?);
        } else {
            wait_token_cache(k, "this scenario reuses tokens", progress, timings).await;
        }
    }
    for (p, d) in login_times {
        timings.add(&format!("login {p}"), d);
    }
    progress.step("API server configured; logins done");
    Ok(())
}

/// What a single-sign-on login costs, at most, as measured (0.2–1.1 s through Kanidm's pages).
const SSO_LOGIN: std::time::Duration = std::time::Duration::from_millis(1_200);

/// Whether logging `people` in afresh is quicker than waiting `wait` for the API server's
/// token cache. Not for kubelogin people: kubelogin answers from its cache, with the same
/// token; nor for passkey people (their login is a browser of their own).
fn relogin_beats_wait(s: &LoadedScenario, people: usize, wait: std::time::Duration) -> bool {
    use crate::scenario::model::{CredentialKind, LoginVia};
    let passkeys = s
        .scenario
        .kanidm
        .persons
        .iter()
        .any(|p| p.credential == CredentialKind::Passkey);
    s.scenario.login.via == LoginVia::Builtin && !passkeys && SSO_LOGIN * (people as u32) < wait
}

/// The scenario's RBAC (replacing the previous scenario's), and the namespaces its actions name.
async fn apply_rbac(
    s: &LoadedScenario,
    cluster: &impl ClusterBackend,
    facts: &LabFacts,
    timings: &mut Timings,
) -> Result<()> {
    let t = Instant::now();
    let admin = crate::rbac_apply::admin_client(cluster.admin_kubeconfig()).await?;
    let objects = render::rbac::render(s, facts)?;
    crate::rbac_apply::replace(&admin, &objects).await?;
    let mut namespaces = Vec::new();
    for e in &s.scenario.expect {
        for a in e.allowed.iter().chain(&e.forbidden) {
            namespaces.extend(a.value.namespace_target().map(str::to_string));
            if let Scope::Namespace(ns) = &a.value.scope {
                namespaces.push(ns.clone());
            }
        }
    }
    namespaces.sort();
    namespaces.dedup();
    crate::rbac_apply::ensure_namespaces(&admin, &namespaces).await?;
    timings.add("rbac applied", t.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> LoadedScenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(format!("{name}.yaml"));
        crate::scenario::load::load_file(&path).unwrap()
    }

    /// A stand-in authentication per scenario: what matters here is which are equal.
    fn auth_by_name(n: &LoadedScenario) -> Option<AuthSetup> {
        let same = n
            .name
            .replace("post2-fix-legacy-crypto", "post2-as-written");
        Some(AuthSetup::Flags(vec![same]))
    }

    #[test]
    fn fresh_logins_replace_the_token_cache_wait_only_where_they_are_quicker_and_fresh() {
        use std::time::Duration;
        let secs = Duration::from_secs;
        assert!(relogin_beats_wait(&shipped("post1-structured"), 2, secs(9)));
        assert!(!relogin_beats_wait(
            &shipped("post1-structured"),
            2,
            secs(2)
        ));
        assert!(!relogin_beats_wait(
            &shipped("post1-structured"),
            9,
            secs(10)
        ));
        // kubelogin would answer from its cache with the very token the API server cached.
        assert!(!relogin_beats_wait(
            &shipped("kubelogin-post1"),
            1,
            secs(10)
        ));
        assert!(!relogin_beats_wait(&shipped("post2-passkey"), 1, secs(10)));
    }

    #[test]
    fn upcoming_configurations_stop_where_kanidm_will_not_be_the_same() {
        let [p1, asw, legacy, algs, down, after] = [
            "post1-structured",
            "post2-as-written",
            "post2-fix-legacy-crypto",
            "post2-fix-signing-algs",
            "lifecycle-kanidm-down",
            "post2-user-binding",
        ]
        .map(shipped);
        let names = |v: Vec<AuthSetup>| -> Vec<String> {
            v.into_iter()
                .map(|a| match a {
                    AuthSetup::Flags(f) => f.join(" "),
                    AuthSetup::Structured { .. } => String::new(),
                })
                .collect()
        };
        let next = [
            asw.clone(),
            legacy.clone(),
            algs.clone(),
            down.clone(),
            after.clone(),
        ];
        // Equal configurations count once; the limit holds.
        assert_eq!(
            names(upcoming_auths(&p1, &next, 2, |_| true, auth_by_name)),
            ["post2-as-written", "post2-fix-signing-algs"]
        );
        // A scenario that stops Kanidm is prepared for, but nothing after it.
        assert_eq!(
            names(upcoming_auths(&p1, &next, 9, |_| true, auth_by_name)),
            [
                "post2-as-written",
                "post2-fix-signing-algs",
                "lifecycle-kanidm-down"
            ]
        );
        // After a scenario that stops Kanidm itself: nothing.
        assert!(
            upcoming_auths(
                &down,
                std::slice::from_ref(&after),
                2,
                |_| true,
                auth_by_name
            )
            .is_empty()
        );
        // Not on this server, or not renderable yet: the look-ahead ends there.
        assert!(upcoming_auths(&p1, &next, 2, |_| false, auth_by_name).is_empty());
        assert_eq!(
            names(upcoming_auths(
                &p1,
                &next,
                2,
                |_| true,
                |n| {
                    (n.name != "post2-fix-legacy-crypto")
                        .then(|| auth_by_name(n))
                        .flatten()
                }
            )),
            ["post2-as-written"]
        );
    }
}
