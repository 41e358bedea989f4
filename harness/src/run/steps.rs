//! A scenario's steps, after its initial expectations: each step changes Kanidm and/or the
//! API server, logs people in afresh where asked, then checks tokens kept from earlier
//! (`tokenFrom`) side by side with fresh ones.

use super::checks::{
    Dirs, ExplainCheck, Recorder, check_expectation, login_all, spare_logins, wait_token_cache,
};
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
    /// More tokens from the same point, never presented to the API server yet, by (point,
    /// name then): see `scenario::steps::spare_tokens`.
    spares: BTreeMap<(String, String), Vec<LoginOutcomeActual>>,
}

/// A kept token as one step presents it (to every check of that step).
struct KeptToken {
    outcome: Option<LoginOutcomeActual>,
    /// The API server has never seen it: it cannot answer from its success cache.
    unseen: bool,
}

impl Kept {
    /// Where `point` is in `held`, and the name `person` (named as now) had then.
    fn locate(&self, point: &str, person: &str) -> Result<(usize, String)> {
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
        Ok((at, steps::earlier_name(person, &later).to_string()))
    }

    /// The outcome `person` (named as now) got at `point`.
    fn token(&self, point: &str, person: &str) -> Result<Option<LoginOutcomeActual>> {
        let (at, then) = self.locate(point, person)?;
        Ok(self.held[at].1.get(&then).cloned())
    }

    /// The token of `point` a step presents for `person`: a spare never presented if one
    /// is left, else the one presented at that point.
    fn take(&mut self, point: &str, person: &str) -> Result<KeptToken> {
        let (_, then) = self.locate(point, person)?;
        if let Some(spare) = self
            .spares
            .get_mut(&(point.to_string(), then))
            .and_then(Vec::pop)
        {
            return Ok(KeptToken {
                outcome: Some(spare),
                unseen: true,
            });
        }
        Ok(KeptToken {
            outcome: self.token(point, person)?,
            unseen: false,
        })
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
    let reloads = ctx.cluster.reloaded_in_place();
    let wanted = steps::spare_tokens(&plans, reloads);
    let may_change = steps::kept_answers_may_change(&plans, reloads);
    let mut kept = Kept {
        spares: mint_spares(
            s,
            k,
            ctx.site,
            ctx.dirs,
            INITIAL,
            &initial,
            &wanted,
            ctx.timings,
        )
        .await?,
        held: vec![(INITIAL.to_string(), initial)],
        renames: Vec::new(),
    };
    let mut results = Vec::new();
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
        let spares = mint_spares(
            &at,
            k,
            ctx.site,
            ctx.dirs,
            name,
            &fresh,
            &wanted,
            ctx.timings,
        )
        .await?;
        kept.spares.extend(spares);
        let presented = kept_tokens(p, &mut kept)?;
        // Only a kept token the API server has seen can be answered from its success cache.
        let seen_before = presented.values().any(|t| t.outcome.is_some() && !t.unseen);
        if seen_before && may_change[i] {
            wait_token_cache(
                k,
                "kept tokens are checked again",
                ctx.progress,
                ctx.timings,
            )
            .await;
        }
        results.append(&mut check_step(&mut ctx, s, p, k, &fresh, &presented, &refreshed).await?);
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
    kept: &BTreeMap<(String, String), KeptToken>,
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
            Some(from) => (
                kept.get(&(from.value.clone(), person.clone()))
                    .and_then(|t| t.outcome.clone()),
                from.value.as_str(),
            ),
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

/// The kept token each `(point, person)` of the step presents, taken once per step.
fn kept_tokens(p: &StepPlan<'_>, kept: &mut Kept) -> Result<BTreeMap<(String, String), KeptToken>> {
    let mut out = BTreeMap::new();
    for e in &p.step.expect {
        let Some(from) = &e.token_from else { continue };
        let key = (from.value.clone(), e.person.value.clone());
        if let std::collections::btree_map::Entry::Vacant(slot) = out.entry(key) {
            let (point, person) = slot.key();
            let t = kept.take(point, person)?;
            slot.insert(t);
        }
    }
    Ok(out)
}

/// The spare tokens `wanted` at `point`, for the people who got a token there.
#[allow(clippy::too_many_arguments)]
async fn mint_spares(
    at: &LoadedScenario,
    k: &mut KanidmLab,
    site: &KanidmSite<'_>,
    dirs: &Dirs,
    point: &str,
    held: &Held,
    wanted: &BTreeMap<(String, String), usize>,
    timings: &mut Timings,
) -> Result<BTreeMap<(String, String), Vec<LoginOutcomeActual>>> {
    let mut out = BTreeMap::new();
    for ((p, person), n) in wanted {
        if p != point || !matches!(held.get(person), Some(LoginOutcomeActual::Token(_))) {
            continue;
        }
        let t = Instant::now();
        let got = spare_logins(at, k, site, &dirs.artifacts, person, *n)
            .await
            .with_context(|| format!("{person}'s spare tokens at `{point}`"))?;
        timings.add(&format!("spare tokens for {person} ({n})"), t.elapsed());
        // Anything but a token (it should not differ from the first login's) is not kept:
        // the step then presents the first token, after the cache wait.
        let tokens = got
            .into_iter()
            .filter(|o| matches!(o, LoginOutcomeActual::Token(_)))
            .collect();
        out.insert((p.clone(), person.clone()), tokens);
    }
    Ok(out)
}
