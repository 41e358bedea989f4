//! The main job: scenarios → PKI → Kanidm → cluster → login → check → report.
//!
//! `mod.rs` drives the minors and the scenarios; `lab.rs` holds one lab's fixed parts,
//! `kanidm_lab.rs` the run's Kanidm, `scenario.rs` one scenario from Kanidm state to judged checks.

pub mod kanidm_lab;
pub mod lab;
pub mod scenario;

pub use lab::{Lab, LabDir};

use crate::check::CheckResult;
use crate::cluster::{Backend, ClusterBackend};
use crate::progress::Progress;
use crate::render::K8sVersion;
use crate::scenario::LoadedScenario;
use crate::timings::Timings;
use anyhow::Result;
use kanidm_lab::KanidmSite;
use scenario::RunCtx;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

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

/// Every scenario, one at a time, against one API server and the run's Kanidm.
pub async fn run_scenarios(
    opts: RunOptions,
    cluster: &mut impl ClusterBackend,
    lab: &Lab,
    progress: &Progress,
) -> Result<RunReport> {
    let placement = cluster.kanidm_placement();
    let mut ctx = RunCtx {
        cluster,
        site: KanidmSite {
            lab,
            placement,
            fresh_kanidm: opts.fresh_kanidm,
        },
        k8s: opts.k8s,
        artifacts: &opts.artifacts,
        progress,
        timings: Timings::default(),
        kanidm: None,
    };
    let mut results = Vec::new();
    for (i, s) in opts.scenarios.iter().enumerate() {
        let t0 = Instant::now();
        progress.scenario_start(i + 1, opts.scenarios.len(), &s.name);
        match scenario::run_scenario(&mut ctx, s).await {
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
        ctx.timings
            .add(&format!("scenario {}", s.name), t0.elapsed());
        let failed = results
            .iter()
            .filter(|r| r.scenario == s.name && !r.passed)
            .count();
        progress.scenario_done(&s.name, failed, t0.elapsed());
    }
    let mut versions = BTreeMap::new();
    if let Some(mut k) = ctx.kanidm.take() {
        k.stop(&opts.artifacts.join("logs"), &mut versions).await;
    }
    let timings = std::mem::take(&mut ctx.timings);
    let cluster = ctx.cluster;
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
    let _ = cluster.collect_logs(&opts.artifacts.join("logs")).await;
    Ok(RunReport {
        results,
        timings,
        artifacts: opts.artifacts,
        versions,
    })
}

/// Options of `cargo xtask e2e`.
pub struct E2eOptions {
    pub scenarios: Vec<LoadedScenario>,
    pub k8s: Vec<K8sVersion>,
    pub backend: Backend,
    pub artifacts: PathBuf,
    pub keep: bool,
    pub fresh_kanidm: bool,
    pub kind: crate::cluster::kind::KindSettings,
    /// On kind, run structured-config scenarios before flag ones (fewer API server restarts).
    pub order_for_speed: bool,
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
        let mut report = run_minor(&opts, *v, &labdir, &progress, &mut all.timings).await?;
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

/// One Kubernetes minor: a lab, a cluster on the chosen backend, every scenario.
async fn run_minor(
    opts: &E2eOptions,
    v: K8sVersion,
    labdir: &LabDir,
    progress: &Progress,
    timings: &mut Timings,
) -> Result<RunReport> {
    let t = Instant::now();
    progress.phase(&format!(
        "Kubernetes {v} on the {} backend: starting lab",
        opts.backend
    ));
    let dir = labdir.path.join(format!("k8s-{v}"));
    let lab = Lab::new(&dir).await?;
    let mut scenarios = opts.scenarios.clone();
    if opts.backend == Backend::Kind && opts.order_for_speed {
        crate::scenario::order_for_fewest_switches(&mut scenarios);
    }
    let artifacts = opts.artifacts.join(format!("k8s-{v}"));
    let run_opts = RunOptions {
        scenarios,
        k8s: v,
        artifacts: artifacts.clone(),
        fresh_kanidm: opts.fresh_kanidm,
    };
    let report = match opts.backend {
        Backend::Local => {
            let mut cluster =
                crate::cluster::local::LocalControlPlane::start(&dir.join("cluster"), &lab.pki)
                    .await?;
            timings.add("control plane (etcd) started", t.elapsed());
            let r = run_scenarios(run_opts, &mut cluster, &lab, progress).await;
            for (i, d) in cluster.ready_times.iter().enumerate() {
                timings.add(&format!("api server start #{} to /readyz", i + 1), *d);
            }
            cluster.shutdown().await;
            r?
        }
        Backend::Kind => {
            let mut cluster = crate::cluster::kind::KindCluster::create(
                &dir.join("cluster"),
                &lab.pki,
                v,
                &opts.kind,
                progress,
            )
            .await?;
            for n in &cluster.notes {
                progress.phase(&format!("note: {n}"));
            }
            timings.add("kind cluster created", t.elapsed());
            let r = run_scenarios(run_opts, &mut cluster, &lab, progress).await;
            let _ = cluster.collect_logs(&artifacts.join("logs")).await;
            cluster.shutdown().await;
            for (what, d) in &cluster.timings {
                timings.add(what, *d);
            }
            r?
        }
    };
    lab::copy_artifacts(&dir, &artifacts);
    Ok(report)
}
