//! The main job: scenarios → PKI → Kanidm → cluster → login → check → report.
//!
//! `mod.rs` drives the minors and the scenarios; `lab.rs` holds one lab's fixed parts,
//! `kanidm_lab.rs` the run's Kanidm, `scenario.rs` one scenario from Kanidm state to judged checks.

mod checks;
pub mod jobs;
pub mod kanidm_lab;
mod kubelogin_login;
pub mod lab;
pub mod scenario;
pub mod shard;
mod steps;

pub use lab::{Lab, LabDir};

use crate::check::CheckResult;
use crate::cluster::{Backend, ClusterBackend};
use crate::kanidm::KanidmSource;
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

/// Where a lab takes its scenarios from: its own list, or — kind workers — a queue shared
/// with the cell's other workers, one group (scenarios that share a Kanidm state) at a time:
/// whoever is free takes the next, so no cost model has to guess the balance.
pub struct Feed {
    groups: std::sync::Mutex<std::collections::VecDeque<Vec<LoadedScenario>>>,
    total: usize,
    taken: std::sync::atomic::AtomicUsize,
    kubelogin: bool,
}

impl Feed {
    /// Groups in the order they are handed out.
    pub fn of(groups: Vec<Vec<LoadedScenario>>) -> Feed {
        Feed {
            total: groups.iter().map(Vec::len).sum(),
            kubelogin: groups.iter().flatten().any(uses_kubelogin),
            groups: std::sync::Mutex::new(groups.into()),
            taken: Default::default(),
        }
    }

    /// One lab's own list.
    pub fn list(scenarios: Vec<LoadedScenario>) -> Feed {
        Feed::of(vec![scenarios])
    }

    fn next_group(&self) -> Option<Vec<LoadedScenario>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// The number of the scenario about to run, counted over everyone taking from here.
    fn number(&self) -> usize {
        self.taken
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }
}

pub struct RunOptions {
    pub feed: std::sync::Arc<Feed>,
    pub k8s: K8sVersion,
    /// Which Kanidm the run starts.
    pub kanidm: KanidmSource,
    pub artifacts: PathBuf,
    /// Never change Kanidm in place: a new server (and new sign-ins) per Kanidm state.
    pub fresh_kanidm: bool,
    /// Cross-check every token with `explain`.
    pub explain_check: bool,
}

pub struct RunReport {
    pub results: Vec<CheckResult>,
    pub timings: Timings,
    pub artifacts: PathBuf,
    pub versions: BTreeMap<String, String>,
    /// The most workers a cell ran at once (1: one scenario at a time).
    pub concurrency: usize,
    /// How many cells of the matrix ran side by side.
    pub cells_at_once: usize,
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
    let kubelogin = match opts.feed.kubelogin {
        true => Some(
            crate::login::kubelogin::Kubelogin::prepare(
                &lab.dir,
                &crate::tools::KUBELOGIN.require()?,
                cluster.kubectl(),
            )
            .await?,
        ),
        false => None,
    };
    if let Some(k) = &kubelogin {
        progress.step(&format!("kubelogin {} ({})", k.version, k.bin.display()));
    }
    let mut ctx = RunCtx {
        cluster,
        site: KanidmSite {
            lab,
            placement,
            source: opts.kanidm.clone(),
            fresh_kanidm: opts.fresh_kanidm,
            kubelogin,
        },
        k8s: opts.k8s,
        artifacts: &opts.artifacts,
        progress,
        timings: Timings::default(),
        kanidm: None,
        explain_check: opts.explain_check,
        prepared_on: None,
    };
    let mut results = Vec::new();
    while let Some(group) = opts.feed.next_group() {
        for (i, s) in group.iter().enumerate() {
            let t0 = Instant::now();
            progress.scenario_start(opts.feed.number(), opts.feed.total, &s.name);
            match scenario::run_scenario(&mut ctx, s, &group[i + 1..]).await {
                Ok(mut r) => results.append(&mut r),
                Err(e) => results.push(CheckResult {
                    cell: String::new(),
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
                "note: the API server is {v}, but configs were rendered for Kubernetes {} (is the node image for another minor?)",
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
        concurrency: 1,
        cells_at_once: 1,
    })
}

/// Options of `cargo xtask e2e`.
pub struct E2eOptions {
    pub scenarios: Vec<LoadedScenario>,
    pub k8s: Vec<K8sVersion>,
    /// The Kanidm axis of the matrix; empty: the backend's default (see
    /// [`kanidm_lab::default_source`]).
    pub kanidm: Vec<KanidmSource>,
    /// The image the default source uses when it is an image.
    pub default_kanidm_image: String,
    pub backend: Backend,
    pub artifacts: PathBuf,
    pub keep: bool,
    pub fresh_kanidm: bool,
    pub kind: crate::cluster::kind::KindSettings,
    /// On kind, run structured-config scenarios before flag ones (fewer API server restarts).
    pub order_for_speed: bool,
    /// Local backend: where the control-plane binaries of each minor are looked for.
    pub places: crate::tools::Places,
    /// Local backend: download a minor's binaries that are found nowhere (`setup`'s code).
    pub fetch_missing: Option<crate::setup::Source>,
    /// Also run `explain` on every token the API server answers, and check it agrees
    /// (verdict, cause, mapped user): the differential test of `explain`.
    pub explain_check: bool,
    /// Labs at once: matrix cells side by side, then scenarios of a cell on several workers
    /// (each a lab of its own: local processes or a kind cluster);
    /// None: what the machine holds ([`jobs::default_jobs`]); Some(1): one at a time.
    pub jobs: Option<usize>,
}

/// One cell of the matrix: a Kubernetes minor and a Kanidm.
struct Cell<'a> {
    k8s: K8sVersion,
    kanidm: &'a KanidmSource,
    /// Folder name of its lab and artifacts.
    slug: String,
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
        concurrency: 1,
        cells_at_once: 1,
    };
    let on_host = opts.backend == Backend::Local;
    let sources = match opts.kanidm.is_empty() {
        true => vec![kanidm_lab::default_source(
            on_host,
            &opts.default_kanidm_image,
        )?],
        false => opts.kanidm.clone(),
    };
    // Everything the matrix needs, before anything starts.
    if opts.scenarios.iter().any(uses_kubelogin) {
        let bin = crate::tools::KUBELOGIN.require()?;
        let v = crate::login::kubelogin::version_of(&bin).await?;
        all.versions.insert("kubelogin".into(), v);
    }
    for k in &sources {
        kanidm_lab::check_source(on_host, k).await?;
    }
    let mut bins = BTreeMap::new();
    if opts.backend == Backend::Local {
        for v in &opts.k8s {
            bins.insert(*v, local_binaries(&opts, *v, &progress).await?);
        }
    }
    let several = sources.len() > 1;
    let cells: Vec<Cell> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, k)| {
            opts.k8s.iter().map(move |v| Cell {
                k8s: *v,
                kanidm: k,
                slug: match several {
                    false => format!("k8s-{v}"),
                    true => format!("k8s-{v}-kanidm-{}", i + 1),
                },
            })
        })
        .collect();
    let (at_once, per_cell) = concurrency(&opts, &cells, &progress);
    let slots = tokio::sync::Semaphore::new(at_once);
    let runs = cells.iter().map(|cell| {
        let (slots, opts, bins, labdir, progress) = (&slots, &opts, &bins, &labdir, &progress);
        async move {
            // A closed semaphore cannot happen (never closed); run anyway if it did.
            let _slot = slots.acquire().await.ok();
            let mut timings = Timings::default();
            let progress = match at_once {
                1 => progress.labelled(""),
                _ => progress.labelled(&cell.slug),
            };
            let r = run_cell(
                opts,
                cell,
                bins.get(&cell.k8s),
                labdir,
                &progress,
                &mut timings,
                per_cell,
            )
            .await;
            r.map(|r| (r, timings))
        }
    });
    let done = join_all(runs.collect()).await;
    for (cell, d) in cells.iter().zip(done) {
        let (mut report, timings) = d?;
        all.timings.entries.extend(timings.entries);
        let label = cell_label(cell.k8s, &report.versions);
        for r in &mut report.results {
            r.cell = label.clone();
        }
        if cells.len() > 1 {
            report.versions = std::mem::take(&mut report.versions)
                .into_iter()
                .map(|(k, val)| (format!("{k}@{}", cell.slug), val))
                .collect();
        }
        all.results.append(&mut report.results);
        all.timings.entries.append(&mut report.timings.entries);
        all.versions.append(&mut report.versions);
        all.concurrency = all.concurrency.max(report.concurrency);
    }
    all.cells_at_once = at_once;
    all.timings.add("total", total.elapsed());
    crate::report::write_junit(&all.results, &opts.artifacts.join("junit.xml"), "e2e")?;
    std::fs::write(
        opts.artifacts.join("summary.txt"),
        crate::report::summary_table(&all.results),
    )?;
    std::fs::write(opts.artifacts.join("timings.txt"), all.timings.render())?;
    Ok(all)
}

/// One lab of a cell (the whole cell, or one worker of it): its directory, PKI and browser, a
/// control plane on the cell's backend, and `scenarios` one after another. `tag` prefixes
/// its timing lines (`w2: `).
#[allow(clippy::too_many_arguments)]
async fn run_lab(
    opts: &E2eOptions,
    cell: &Cell<'_>,
    bins: Option<&crate::tools::ControlPlaneBins>,
    dir: &std::path::Path,
    artifacts: &std::path::Path,
    feed: std::sync::Arc<Feed>,
    progress: &Progress,
    tag: &str,
) -> Result<(RunReport, Timings)> {
    let t = Instant::now();
    let v = cell.k8s;
    let mut extra = Timings::default();
    let lab = Lab::new(dir).await?;
    let run_opts = RunOptions {
        feed,
        k8s: v,
        kanidm: cell.kanidm.clone(),
        artifacts: artifacts.to_path_buf(),
        fresh_kanidm: opts.fresh_kanidm,
        explain_check: opts.explain_check,
    };
    let report = match (opts.backend, bins) {
        (Backend::Local, Some(bins)) => {
            if tag.is_empty() {
                progress.step(&format!(
                    "kube-apiserver {} from {} ({})",
                    bins.version,
                    bins.via,
                    bins.apiserver.display()
                ));
            }
            let mut cluster = crate::cluster::local::LocalControlPlane::start(
                &dir.join("cluster"),
                &lab.pki,
                bins,
            )
            .await?;
            extra.add(&format!("{tag}control plane (etcd) started"), t.elapsed());
            let r = run_scenarios(run_opts, &mut cluster, &lab, progress).await;
            for (i, d) in cluster.ready_times.iter().enumerate() {
                extra.add(&format!("{tag}api server start #{} to /readyz", i + 1), *d);
            }
            for (i, (_, waited)) in cluster.adopted.iter().enumerate() {
                extra.add(
                    &format!("{tag}api server prepared ahead #{}: still waited", i + 1),
                    *waited,
                );
            }
            cluster.shutdown().await;
            r
        }
        (Backend::Local, None) => anyhow::bail!("no control-plane binaries for Kubernetes {v}"),
        (Backend::Kind, _) => {
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
            extra.add(&format!("{tag}kind cluster created"), t.elapsed());
            let r = run_scenarios(run_opts, &mut cluster, &lab, progress).await;
            let _ = cluster.collect_logs(&artifacts.join("logs")).await;
            cluster.shutdown().await;
            for (what, d) in &cluster.timings {
                extra.add(&format!("{tag}{what}"), *d);
            }
            r
        }
    };
    lab::copy_artifacts(dir, artifacts);
    if !tag.is_empty() {
        extra.add(&format!("{tag}worker wall time"), t.elapsed());
    }
    report.map(|r| (r, extra))
}

/// A cell's scenarios on several workers at once, each a lab of its own (PKI, browser, a
/// control plane — local processes or a kind cluster — and Kanidm) under `<cell>/w<i>`; the
/// results in the scenarios' order, as one worker would have given them.
#[allow(clippy::too_many_arguments)]
async fn run_workers(
    opts: &E2eOptions,
    cell: &Cell<'_>,
    bins: Option<&crate::tools::ControlPlaneBins>,
    dir: &std::path::Path,
    artifacts: &std::path::Path,
    scenarios: Vec<LoadedScenario>,
    workers: Vec<Vec<usize>>,
    progress: &Progress,
    timings: &mut Timings,
) -> Result<RunReport> {
    let n = workers.len();
    progress.step(&match opts.backend {
        Backend::Local => format!(
            "{} scenarios on {n} workers: {}",
            scenarios.len(),
            workers
                .iter()
                .enumerate()
                .map(|(w, idx)| format!("w{} {}", w + 1, idx.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Backend::Kind => format!(
            "{} scenarios on {n} kind clusters, each taking the next group of scenarios when free",
            scenarios.len()
        ),
    });
    // kind workers share one queue (their costs — reloads, restarts — are not what the cost
    // model fits); local workers keep their lists, so a worker can start the next
    // scenarios' API servers ahead.
    let shared = (opts.backend == Backend::Kind).then(|| {
        let groups = jobs::groups_heaviest_first(&scenarios)
            .into_iter()
            .map(|g| g.iter().map(|&i| scenarios[i].clone()).collect())
            .collect();
        std::sync::Arc::new(Feed::of(groups))
    });
    let runs = workers.iter().enumerate().map(|(w, idx)| {
        let feed = match &shared {
            Some(f) => f.clone(),
            None => std::sync::Arc::new(Feed::list(
                idx.iter().map(|&i| scenarios[i].clone()).collect(),
            )),
        };
        let wdir = dir.join(format!("w{}", w + 1));
        let wart = artifacts.join(format!("w{}", w + 1));
        async move {
            let tag = format!("w{}", w + 1);
            let wprogress = progress.labelled(&tag);
            run_lab(
                opts,
                cell,
                bins,
                &wdir,
                &wart,
                feed,
                &wprogress,
                &format!("{tag}: "),
            )
            .await
        }
    });
    let done = join_all(runs.collect()).await;
    let order: BTreeMap<&str, usize> = scenarios
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut all = RunReport {
        results: Vec::new(),
        timings: Timings::default(),
        artifacts: artifacts.to_path_buf(),
        versions: BTreeMap::new(),
        concurrency: n,
        cells_at_once: 1,
    };
    for d in done {
        let (mut r, extra) = d?;
        all.results.append(&mut r.results);
        all.timings.entries.append(&mut r.timings.entries);
        timings.entries.extend(extra.entries);
        all.versions.append(&mut r.versions);
    }
    // The report's order: the scenarios' (stable within one scenario).
    all.results.sort_by_key(|r| {
        order
            .get(r.scenario.as_str())
            .copied()
            .unwrap_or(usize::MAX)
    });
    Ok(all)
}

/// Every future at once on this task (they borrow the cell's data); outputs in order.
async fn join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        fs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, result) in pending.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The run's concurrency: cells side by side, and workers per cell (local backend); from
/// `--jobs`, else from what the machine holds (said in the output).
fn concurrency(opts: &E2eOptions, cells: &[Cell<'_>], progress: &Progress) -> (usize, usize) {
    let budget = match opts.jobs {
        Some(n) => n,
        None => {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let memory = jobs::available_memory();
            let (n, why) = match opts.backend {
                Backend::Local => {
                    let per_cell = jobs::groups(&opts.scenarios).min(jobs::worth(&opts.scenarios));
                    jobs::default_jobs(cores, memory, per_cell * cells.len())
                }
                // A kind cluster mostly waits on its API server (reloads, restarts): two
                // per core. Measured on 2 cores: one minor on 3 clusters 150.4–164.9 s, on 4
                // 155.6–181.8 s, on 1 326.1 s; two minors on 4 clusters (2 each) 287.3 s,
                // on 2 344–360 s, on 6 397.6 s (CPU-bound).
                Backend::Kind => {
                    let per_cell = jobs::groups(&opts.scenarios).min(jobs::worth(&opts.scenarios));
                    jobs::default_jobs_over(
                        cores,
                        cores,
                        memory,
                        per_cell * cells.len(),
                        jobs::MEMORY_PER_KIND_CELL,
                    )
                }
            };
            progress.step(&format!("concurrency {n} ({why}; --jobs overrides)"));
            n
        }
    };
    let (at_once, per_cell) = jobs::split_budget(budget, cells.len());
    if cells.len() > 1 {
        progress.step(&format!(
            "{} cells, {at_once} at a time{}",
            cells.len(),
            match opts.backend {
                Backend::Local => format!(", {per_cell} worker(s) each"),
                Backend::Kind => format!(", {per_cell} kind cluster(s) each"),
            }
        ));
    }
    (at_once, per_cell)
}

/// `Kubernetes 1.33 (v1.33.13), kanidmd 1.10.4`: what a cell really ran.
fn cell_label(k8s: K8sVersion, versions: &BTreeMap<String, String>) -> String {
    let api = versions
        .get("kube-apiserver")
        .map(|v| format!(" ({v})"))
        .unwrap_or_default();
    let kanidm = versions
        .get("kanidmd")
        .map(|v| format!(", kanidmd {v}"))
        .unwrap_or_default();
    format!("Kubernetes {k8s}{api}{kanidm}")
}

/// The control-plane binaries of minor `v`, downloaded first when they are found nowhere
/// and the run may fetch them.
async fn local_binaries(
    opts: &E2eOptions,
    v: K8sVersion,
    progress: &Progress,
) -> Result<crate::tools::ControlPlaneBins> {
    match crate::tools::control_plane_for(&opts.places, v.minor).await {
        Ok(b) => Ok(b),
        Err(not_found) => {
            let Some(source) = &opts.fetch_missing else {
                return Err(not_found);
            };
            progress.phase(&format!(
                "Kubernetes {v}: no binaries here; downloading them (as `cargo xtask setup --k8s {v}` does)"
            ));
            let cache = opts.places.cache.clone().ok_or_else(|| {
                anyhow::anyhow!("{not_found:#}\n  (no cache directory: set LAB_CACHE_DIR or HOME)")
            })?;
            crate::setup::install_k8s(source, &cache, v, progress)
                .await
                .map_err(|e| anyhow::anyhow!("{not_found:#}\ndownloading them failed: {e:#}"))?;
            crate::tools::control_plane_for(&opts.places, v.minor).await
        }
    }
}

/// Whether a scenario logs in through real kubelogin.
fn uses_kubelogin(s: &LoadedScenario) -> bool {
    s.scenario.login.via == crate::scenario::model::LoginVia::Kubelogin
}

/// One cell: a lab, a cluster on the chosen backend, every scenario.
async fn run_cell(
    opts: &E2eOptions,
    cell: &Cell<'_>,
    bins: Option<&crate::tools::ControlPlaneBins>,
    labdir: &LabDir,
    progress: &Progress,
    timings: &mut Timings,
    jobs: usize,
) -> Result<RunReport> {
    let v = cell.k8s;
    progress.phase(&format!(
        "Kubernetes {v} on the {} backend, Kanidm from {}: starting lab",
        opts.backend, cell.kanidm
    ));
    let dir = labdir.path.join(&cell.slug);
    let mut scenarios = opts.scenarios.clone();
    if opts.backend == Backend::Kind && opts.order_for_speed {
        crate::scenario::order_for_fewest_switches(&mut scenarios);
    }
    let artifacts = opts.artifacts.join(&cell.slug);
    let workers = jobs::partition(&scenarios, jobs);
    if workers.len() > 1 {
        return run_workers(
            opts, cell, bins, &dir, &artifacts, scenarios, workers, progress, timings,
        )
        .await;
    }
    let (report, extra) = run_lab(
        opts,
        cell,
        bins,
        &dir,
        &artifacts,
        std::sync::Arc::new(Feed::list(scenarios)),
        progress,
        "",
    )
    .await?;
    timings.entries.extend(extra.entries);
    Ok(report)
}
