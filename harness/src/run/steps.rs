//! A scenario's steps, after its initial expectations: each step changes Kanidm and/or the
//! API server, logs people in afresh where asked, then checks tokens kept from earlier
//! (`tokenFrom`) side by side with fresh ones.

use super::checks::{Dirs, ExplainCheck, Recorder, check_expectation, login_all, wait_token_cache};
use super::kanidm_lab::{KanidmLab, KanidmSite};
use crate::check::CheckResult;
use crate::check::judge;
use crate::cluster::{AuthSetup, ClusterBackend};
use crate::login::flow::LoginOutcomeActual;
use crate::progress::Progress;
use crate::render::K8sVersion;
use crate::render::plan::auth_setup;
use crate::scenario::LoadedScenario;
use crate::scenario::model::Change;
use crate::scenario::steps::{self, INITIAL, StepPlan};
use crate::timings::Timings;
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::time::Instant;

/// Tokens people held at one point (`initial` or a step), by the name they had then.
type Held = BTreeMap<String, LoginOutcomeActual>;

/// Everything a step needs from the scenario run.
pub(super) struct StepCtx<'a, 'b, C: ClusterBackend> {
    pub cluster: &'a mut C,
    pub site: &'a KanidmSite<'b>,
    pub k8s: K8sVersion,
    pub dirs: &'a Dirs,
    pub timings: &'a mut Timings,
    pub progress: &'a Progress,
    /// `explain`'s input for the API server's current authentication (`--explain-check`).
    pub explain: Option<ExplainCheck>,
}

/// Tokens kept at each point (`initial`, then each step) and the renames since, to find a
/// person's token by the name they have now.
struct Kept {
    held: Vec<(String, Held)>,
    /// (step number from 1, old, new)
    renames: Vec<(usize, String, String)>,
}

impl Kept {
    /// The outcome `person` (named as now) got at `point`.
    fn token(&self, point: &str, person: &str) -> Result<Option<LoginOutcomeActual>> {
        let at = self
            .held
            .iter()
            .position(|(n, _)| n == point)
            .ok_or_else(|| anyhow!("no tokens kept for `{point}`"))?;
        let later: Vec<(String, String)> = self
            .renames
            .iter()
            .filter(|(step, _, _)| *step > at)
            .map(|(_, o, n)| (o.clone(), n.clone()))
            .collect();
        let then = steps::earlier_name(person, &later);
        Ok(self.held[at].1.get(then).cloned())
    }

    /// The kubelogin cache behind `person`'s latest kubelogin token (a refresh starts there).
    fn latest_kubelogin(
        &self,
        person: &str,
    ) -> Option<std::sync::Arc<crate::login::kubelogin::KubeloginCred>> {
        self.held.iter().rev().find_map(|(point, _)| {
            match self.token(point, person).ok().flatten() {
                Some(LoginOutcomeActual::Token(t)) => t.kubelogin.clone(),
                _ => None,
            }
        })
    }

    /// `<point>:<person>` → the `jti` of every kept token (for `${jti:…}`).
    fn jtis(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (point, tokens) in &self.held {
            for (person, outcome) in tokens {
                if let LoginOutcomeActual::Token(t) = outcome
                    && let Some(jti) = t.claims["jti"].as_str()
                {
                    out.insert(format!("{point}:{person}"), jti.to_string());
                }
            }
        }
        out
    }
}

pub(super) async fn run_steps<C: ClusterBackend>(
    mut ctx: StepCtx<'_, '_, C>,
    s: &LoadedScenario,
    k: &mut KanidmLab,
    initial: Held,
) -> Result<Vec<CheckResult>> {
    let plans = steps::plan(&s.scenario).map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
    let dir = s.path.parent().unwrap_or(std::path::Path::new("."));
    let mut kept = Kept {
        held: vec![(INITIAL.to_string(), initial)],
        renames: Vec::new(),
    };
    let mut results = Vec::new();
    let mut keys_changed = false;
    for (i, p) in plans.iter().enumerate() {
        let name = &p.step.name.value;
        let t = Instant::now();
        ctx.progress
            .step(&format!("step {}/{}: {name}", i + 1, plans.len()));
        let note = k
            .apply_step(p, dir, &ctx.site.lab.http)
            .await
            .with_context(|| format!("step `{name}`: changing Kanidm"))?;
        if !note.is_empty() {
            ctx.progress.step(&format!("  {note}"));
        }
        kept.renames
            .extend(p.renames.iter().map(|(o, n)| (i + 1, o.clone(), n.clone())));
        let at = steps::scenario_at(s, p);
        if p.api_server_changes {
            let auth = configure(
                &mut *ctx.cluster,
                &at,
                p,
                k,
                ctx.site,
                ctx.k8s,
                &kept.jtis(),
            )
            .await?;
            if ctx.explain.is_some() {
                ctx.explain = Some(ExplainCheck::of(
                    &auth,
                    &ctx.cluster.ca_path_for_apiserver(),
                    &ctx.site.lab.pki.ca_cert,
                    ctx.k8s,
                ));
            }
        }
        let mut fresh = fresh_logins(&at, p, k, ctx.site, ctx.dirs, ctx.timings).await?;
        let refreshed = refreshes(&at, p, k, ctx.site, ctx.dirs, &kept, ctx.timings).await?;
        for (person, outs) in &refreshed {
            if let Some(first) = outs.first() {
                fresh.insert(person.clone(), first.clone());
            }
        }
        keys_changed |= has_key_events(p);
        if needs_cache_wait(p, keys_changed, &*ctx.cluster) {
            wait_token_cache(
                k,
                "kept tokens are checked again",
                ctx.progress,
                ctx.timings,
            )
            .await;
        }
        results.append(&mut check_step(&mut ctx, s, p, k, &fresh, &kept, &refreshed).await?);
        k.last_token_use = Some(Instant::now());
        kept.held.push((name.clone(), fresh));
        ctx.timings.add(&format!("step {name}"), t.elapsed());
    }
    Ok(results)
}

/// Every expectation of one step, each with its kept or fresh token.
async fn check_step<C: ClusterBackend>(
    ctx: &mut StepCtx<'_, '_, C>,
    s: &LoadedScenario,
    p: &StepPlan<'_>,
    k: &KanidmLab,
    fresh: &Held,
    kept: &Kept,
    refreshed: &BTreeMap<String, Vec<LoginOutcomeActual>>,
) -> Result<Vec<CheckResult>> {
    let name = &p.step.name.value;
    let facts = k.facts(
        &ctx.site.lab.pki.ca_pem,
        ctx.cluster.ca_path_for_apiserver(),
    );
    // Readiness with a real token is worth waiting for only when the API server or
    // Kanidm just came up; with Kanidm down it cannot come.
    let mut oidc_ready = !p.kanidm_running
        || !(p.api_server_changes || p.events.iter().any(|e| matches!(e, Change::StartKanidm)));
    let mut results = Vec::new();
    for e in &p.step.expect {
        let person = &e.person.value;
        let mut rec = Recorder::new(s, person);
        let (outcome, point) = match &e.token_from {
            Some(from) => (kept.token(&from.value, person)?, from.value.as_str()),
            None => (fresh.get(person).cloned(), name.as_str()),
        };
        rec.prefix = match (&e.token_from, &e.refresh) {
            (Some(from), _) => format!("{name} [token from {}]: ", from.value),
            (None, Some(_)) => format!("{name} [kubelogin refresh]: "),
            (None, None) => format!("{name} [fresh login]: "),
        };
        if let Some(want) = &e.refresh {
            let outs = refreshed.get(person).map(Vec::as_slice).unwrap_or(&[]);
            let j = judge::refresh(want.value, outs);
            rec.push("refresh".into(), j, None);
        }
        let Some(outcome) = outcome else {
            rec.push("token".into(), judge::no_kept_token(person, point), None);
            results.append(&mut rec.results);
            continue;
        };
        check_expectation(
            &*ctx.cluster,
            e,
            &outcome,
            e.token_from.as_ref().map(|t| t.value.as_str()),
            &facts,
            ctx.dirs,
            &mut oidc_ready,
            ctx.explain.as_ref(),
            &mut rec,
            ctx.timings,
        )
        .await
        .with_context(|| format!("step `{name}`"))?;
        results.append(&mut rec.results);
    }
    Ok(results)
}

/// The step's API server authentication (or a restart on the same one).
async fn configure<C: ClusterBackend>(
    cluster: &mut C,
    at: &LoadedScenario,
    p: &StepPlan<'_>,
    k: &KanidmLab,
    site: &KanidmSite<'_>,
    k8s: K8sVersion,
    jtis: &BTreeMap<String, String>,
) -> Result<AuthSetup> {
    let mut facts = k.facts(&site.lab.pki.ca_pem, cluster.ca_path_for_apiserver());
    facts.values.jtis = jtis.clone();
    let auth = auth_setup(at, &facts, k8s)?;
    if p.step.restart_api_server {
        cluster.forget_auth();
    }
    cluster
        .configure_auth(&auth)
        .await
        .with_context(|| format!("step `{}`: configuring the API server", p.step.name.value))?;
    Ok(auth)
}

/// Everyone the step checks without `tokenFrom`, logged in now (the SSO session decides,
/// like kubelogin's next login).
async fn fresh_logins(
    at: &LoadedScenario,
    p: &StepPlan<'_>,
    k: &mut KanidmLab,
    site: &KanidmSite<'_>,
    dirs: &Dirs,
    timings: &mut Timings,
) -> Result<Held> {
    let mut people: Vec<String> = p
        .step
        .expect
        .iter()
        .filter(|e| e.token_from.is_none() && e.refresh.is_none())
        .map(|e| e.person.value.clone())
        .collect();
    people.sort();
    people.dedup();
    if people.is_empty() {
        return Ok(Held::new());
    }
    // Nothing from an earlier state counts as fresh.
    k.tokens.remove(&k.fingerprint);
    for (who, d) in login_all(at, k, site, &dirs.artifacts, &people).await? {
        timings.add(&format!("login {who}"), d);
    }
    Ok(k.current_tokens().cloned().unwrap_or_default())
}

/// Everyone the step refreshes through kubelogin (`refresh:`), from the cache of their
/// latest kubelogin token; several runs at once with `concurrent:`.
async fn refreshes(
    at: &LoadedScenario,
    p: &StepPlan<'_>,
    k: &mut KanidmLab,
    site: &KanidmSite<'_>,
    dirs: &Dirs,
    kept: &Kept,
    timings: &mut Timings,
) -> Result<BTreeMap<String, Vec<LoginOutcomeActual>>> {
    let mut out = BTreeMap::new();
    for e in p.step.expect.iter().filter(|e| e.refresh.is_some()) {
        let person = &e.person.value;
        if out.contains_key(person) {
            continue;
        }
        let t = Instant::now();
        let outs = match kept.latest_kubelogin(person) {
            Some(from) => {
                let n = e.concurrent.as_ref().map(|c| c.value).unwrap_or(1);
                super::kubelogin_login::refresh(at, k, site, &dirs.artifacts, person, &from, n)
                    .await
                    .with_context(|| format!("step `{}`: refreshing {person}", p.step.name.value))?
            }
            None => vec![LoginOutcomeActual::Error(format!(
                "{person} has no kubelogin token from an earlier point to refresh"
            ))],
        };
        timings.add(&format!("refresh {person} (kubelogin)"), t.elapsed());
        out.insert(person.clone(), outs);
    }
    Ok(out)
}

fn has_key_events(p: &StepPlan<'_>) -> bool {
    p.events.iter().any(|e| {
        matches!(
            e,
            Change::RotateSigningKey { .. } | Change::ResetSecrets { .. }
        )
    })
}

/// Kept tokens whose answer may have changed must not be answered from the API server's
/// 10 s success cache: once signing keys changed in this scenario (any later fresh token
/// may make the API server refetch the JWKS), or after a config reloaded in place. Group,
/// scope-map and account changes cannot change a kept token's answer: no wait.
fn needs_cache_wait(p: &StepPlan<'_>, keys_changed: bool, cluster: &impl ClusterBackend) -> bool {
    let keeps = p.step.expect.iter().any(|e| e.token_from.is_some());
    keeps && (keys_changed || (p.api_server_changes && cluster.reloaded_in_place()))
}
