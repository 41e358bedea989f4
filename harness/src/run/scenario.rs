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

use super::checks::{Dirs, ExplainCheck, Recorder, check_expectation, login_all, wait_token_cache};

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
}

pub async fn run_scenario<C: ClusterBackend>(
    ctx: &mut RunCtx<'_, C>,
    s: &LoadedScenario,
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
    } = ctx;
    let k = kanidm_lab::prepare(s, site, kanidm, timings, progress).await?;
    let facts = k.facts(&site.lab.pki.ca_pem, cluster.ca_path_for_apiserver());
    let auth = auth_setup(s, &facts, *k8s)?;
    let dirs = Dirs {
        secret: site.lab.dir.join("scenarios").join(&s.name),
        artifacts: artifacts.join("scenarios").join(&s.name),
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
    configure_and_log_in(s, &mut **cluster, &auth, k, site, &dirs, timings, progress).await?;
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

/// The API server restart or reload and the browser logins do not depend on each other:
/// they overlap. (The API server starts after Kanidm serves the client's discovery
/// document, which it already does here: a failed first discovery is retried only after 10 s.)
#[allow(clippy::too_many_arguments)]
async fn configure_and_log_in<C: ClusterBackend>(
    s: &LoadedScenario,
    cluster: &mut C,
    auth: &AuthSetup,
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
    let (configured, logins) = tokio::join!(
        cluster.configure_auth(auth),
        login_all(s, k, site, &dirs.artifacts, &people)
    );
    configured.context("configuring the API server")?;
    let login_times = logins?;
    timings.add("api server configured", t.elapsed());
    // A token that succeeded under the old config is answered from the API server's cache
    // for 10 s after a reload in place; fresh tokens and restarted API servers are not.
    if cluster.reloaded_in_place() && reuses_tokens {
        wait_token_cache(k, "this scenario reuses tokens", progress, timings).await;
    }
    for (p, d) in login_times {
        timings.add(&format!("login {p}"), d);
    }
    progress.step("API server configured; logins done");
    Ok(())
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
