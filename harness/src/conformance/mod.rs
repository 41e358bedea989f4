//! `cargo xtask conformance`: the real kube-apiserver is the oracle for explain's validator.
//!
//! Each configuration of the corpus (`corpus`) is given to a real kube-apiserver binary,
//! which either refuses to start with field errors or gets past authentication (it is
//! started with an authorization webhook file that does not exist, read right after
//! authentication, so it always exits within about a second and never needs etcd). The
//! same file goes through `explain::config::from_config` for the binary's minor. `verdict`
//! reads both answers into one shape and compares them per case. Any disagreement is a bug
//! in explain (or a documented caveat).

pub mod corpus;
pub mod token_run;
pub mod tokens;
pub mod verdict;

use crate::explain::config;
use crate::render::K8sVersion;
use anyhow::{Context, Result};
use corpus::{Batch, Case};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use verdict::Verdict;

/// One kube-apiserver to judge with.
#[derive(Debug, Clone)]
pub struct Target {
    pub binary: PathBuf,
    /// Its `--version`, e.g. `v1.36.2`.
    pub version: String,
    pub minor: u32,
}

/// One case judged by both.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    pub apiserver: Verdict,
    pub explain: Verdict,
}

impl CaseResult {
    pub fn agrees(&self) -> bool {
        verdict::agree(&self.apiserver, &self.explain)
    }
}

#[derive(Debug)]
pub struct Report {
    pub target: Target,
    pub results: Vec<CaseResult>,
    /// kube-apiserver processes started.
    pub starts: usize,
    pub elapsed: Duration,
}

impl Report {
    pub fn disagreements(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| !r.agrees())
    }
}

/// A kube-apiserver start never takes this long; past it the run is stuck.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Judge every case whose name or source contains `only` (all if `None`) with `target`,
/// `jobs` kube-apiservers at a time. `progress(done, total)` after each start.
pub async fn run(
    target: &Target,
    only: Option<&str>,
    jobs: usize,
    progress: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Result<Report> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("kanidm-lab-conformance-")
        .tempdir()
        .context("creating a working directory")?;
    let key = rcgen::KeyPair::generate().context("generating a service-account key")?;
    let key_path = dir.path().join("sa.key");
    std::fs::write(&key_path, key.serialize_pem()).context("writing the service-account key")?;
    std::fs::write(dir.path().join("sa.pub"), key.public_key_pem())
        .context("writing the service-account key")?;
    let cases: Vec<Case> = corpus::cases(target.minor)
        .into_iter()
        .filter(|c| only.is_none_or(|o| c.name.contains(o) || c.source.contains(o)))
        .collect();
    let batches = corpus::batches_of(&cases, target.minor);
    let total = batches.len();
    let shared = Arc::new(Shared {
        target: target.clone(),
        dir: dir.path().to_path_buf(),
        key: key_path,
        progress: Box::new(progress),
        done: std::sync::atomic::AtomicUsize::new(0),
        starts: std::sync::atomic::AtomicUsize::new(0),
        total: std::sync::atomic::AtomicUsize::new(total),
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, b) in batches.into_iter().enumerate() {
        let (shared, sem) = (shared.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            judge_batch(&shared, i, b).await
        });
    }
    let mut results: Vec<(usize, Vec<CaseResult>)> = Vec::new();
    while let Some(r) = set.join_next().await {
        results.push(r.context("a conformance task failed")??);
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(Report {
        target: target.clone(),
        results: results.into_iter().flat_map(|(_, r)| r).collect(),
        starts: shared.starts.load(std::sync::atomic::Ordering::SeqCst),
        elapsed: started.elapsed(),
    })
}

struct Shared {
    target: Target,
    dir: PathBuf,
    key: PathBuf,
    progress: Box<dyn Fn(usize, usize) + Send + Sync>,
    done: std::sync::atomic::AtomicUsize,
    starts: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicUsize,
}

async fn judge_batch(
    shared: &Shared,
    index: usize,
    batch: Batch,
) -> Result<(usize, Vec<CaseResult>)> {
    use std::sync::atomic::Ordering::SeqCst;
    let text = match &batch.text {
        Some(t) => t.clone(),
        None => serde_json::to_string_pretty(&batch.doc).context("writing a configuration")?,
    };
    let apiserver = apiserver_verdict(shared, &format!("b{index}"), &text).await?;
    let explain = explain_verdict(&text, shared.target.minor);
    let results = if batch.batched {
        if matches!(apiserver, Verdict::Undecodable(_) | Verdict::Unknown(_)) {
            // The batch as a whole failed: judge each case alone.
            shared.total.fetch_add(batch.cases.len(), SeqCst);
            let mut out = Vec::new();
            for (k, case) in batch.cases.iter().enumerate() {
                let one = corpus::batches_of(std::slice::from_ref(case), shared.target.minor);
                let Some(b) = one.into_iter().next() else {
                    continue;
                };
                let text =
                    serde_json::to_string_pretty(&b.doc).context("writing a configuration")?;
                let a = apiserver_verdict(shared, &format!("b{index}-{k}"), &text).await?;
                let e = explain_verdict(&text, shared.target.minor);
                out.push(CaseResult {
                    case: case.clone(),
                    apiserver: verdict::for_case(&a, 0),
                    explain: verdict::for_case(&e, 0),
                });
                let done = shared.done.fetch_add(1, SeqCst) + 1;
                (shared.progress)(done, shared.total.load(SeqCst));
            }
            out
        } else {
            batch
                .cases
                .iter()
                .enumerate()
                .map(|(i, case)| CaseResult {
                    case: case.clone(),
                    apiserver: verdict::for_case(&apiserver, i),
                    explain: verdict::for_case(&explain, i),
                })
                .collect()
        }
    } else {
        batch
            .cases
            .iter()
            .map(|case| CaseResult {
                case: case.clone(),
                apiserver: apiserver.clone(),
                explain: explain.clone(),
            })
            .collect()
    };
    let done = shared.done.fetch_add(1, SeqCst) + 1;
    (shared.progress)(done, shared.total.load(SeqCst));
    Ok((index, results))
}

fn explain_verdict(text: &str, minor: u32) -> Verdict {
    let r = config::from_config(text, "corpus", K8sVersion { minor })
        .map(|_| ())
        .map_err(|e| e.0);
    verdict::from_explain(&r)
}

/// Start the real kube-apiserver on `text` and read its verdict.
async fn apiserver_verdict(shared: &Shared, name: &str, text: &str) -> Result<Verdict> {
    shared
        .starts
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let config = shared.dir.join(format!("{name}.json"));
    std::fs::write(&config, text).context("writing a configuration")?;
    let log = shared.dir.join(format!("{name}.log"));
    let certs = shared.dir.join(format!("{name}-certs"));
    for attempt in 0..3 {
        let port = crate::process::free_port()?;
        let out = run_apiserver(
            &shared.target.binary,
            &config,
            &shared.key,
            &certs,
            port,
            &log,
        )
        .await?;
        let v = verdict::from_apiserver_log(&out);
        // A port taken between picking and binding: pick another.
        if matches!(&v, Verdict::Unknown(m) if m.contains("address already in use")) && attempt < 2
        {
            continue;
        }
        return Ok(v);
    }
    Ok(Verdict::Unknown("the port was taken three times".into()))
}

async fn run_apiserver(
    binary: &Path,
    config: &Path,
    key: &Path,
    certs: &Path,
    port: u16,
    log: &Path,
) -> Result<String> {
    let out = std::fs::File::create(log).context("creating a log file")?;
    let err = out.try_clone()?;
    let nowhere = log.with_extension("absent");
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg(format!("--authentication-config={}", config.display()))
        // Nothing listens there: the API server never gets as far as etcd.
        .arg("--etcd-servers=https://127.0.0.1:1")
        .arg(format!("--service-account-issuer={}", corpus::SA_ISSUER))
        .arg(format!(
            "--service-account-key-file={}",
            key.with_extension("pub").display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            key.display()
        ))
        .arg(format!("--cert-dir={}", certs.display()))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .arg("--service-cluster-ip-range=10.96.0.0/16")
        // Read right after authentication is built: its absence is the "accepted" signal.
        .arg("--authorization-mode=Webhook")
        .arg(format!(
            "--authorization-webhook-config-file={}",
            nowhere.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .process_group(0);
    crate::process::die_with_parent(cmd.as_std_mut());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    match tokio::time::timeout(START_DEADLINE, child.wait()).await {
        Ok(status) => {
            status.context("waiting for kube-apiserver")?;
        }
        Err(_) => {
            let _ = child.kill().await;
            return Ok(format!(
                "kube-apiserver did not exit within {} s",
                START_DEADLINE.as_secs()
            ));
        }
    }
    let bytes = crate::input_file::read_bytes(log, 16 << 20, "the kube-apiserver log")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The report a user reads: each disagreement with the case, then one summary line per
/// target. `all` prints every case.
pub fn render(report: &Report, all: bool) -> String {
    use crate::input_file::printable;
    use std::fmt::Write as _;
    let mut out = String::new();
    for r in &report.results {
        let ok = r.agrees();
        if ok && !all {
            continue;
        }
        let _ = writeln!(
            out,
            "{}  {}  ({})",
            if ok { "agree   " } else { "DISAGREE" },
            r.case.name,
            r.case.source
        );
        let input = match &r.case.kind {
            corpus::CaseKind::Cel { slot, expression } => {
                format!("{}: {}", slot.name(), shorten(expression, 160))
            }
            corpus::CaseKind::Config(doc) => shorten(&doc.to_string(), 160),
            corpus::CaseKind::Yaml(t) => shorten(t, 160),
        };
        let _ = writeln!(out, "    input:          {}", printable(&input));
        let _ = writeln!(
            out,
            "    kube-apiserver: {}",
            printable(&shorten(&r.apiserver.short(), 400))
        );
        let _ = writeln!(
            out,
            "    explain:        {}",
            printable(&shorten(&r.explain.short(), 400))
        );
    }
    let cel = report
        .results
        .iter()
        .filter(|r| matches!(r.case.kind, corpus::CaseKind::Cel { .. }))
        .count();
    let bad = report.disagreements().count();
    let _ = writeln!(
        out,
        "kube-apiserver {} ({}): {} cases ({cel} CEL expressions, {} configurations), {} agree, {bad} disagree; {} kube-apiserver starts, {:.1} s",
        report.target.version,
        report.target.binary.display(),
        report.results.len(),
        report.results.len() - cel,
        report.results.len() - bad,
        report.starts,
        report.elapsed.as_secs_f64()
    );
    out
}

/// At most `n` characters of `s`, with the length said when cut.
fn shorten(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        format!(
            "{}… ({count} characters)",
            s.chars().take(n).collect::<String>()
        )
    }
}

/// The corpus, one line per case (`cargo xtask conformance --list`).
pub fn list(minor: u32) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for c in corpus::cases(minor) {
        let input = match &c.kind {
            corpus::CaseKind::Cel { slot, expression } => {
                format!("{}\t{}", slot.name(), shorten(expression, 200))
            }
            corpus::CaseKind::Config(doc) => format!("config\t{}", shorten(&doc.to_string(), 200)),
            corpus::CaseKind::Yaml(t) => format!("yaml\t{}", shorten(t, 200)),
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}",
            c.name,
            crate::input_file::printable(&input),
            c.source
        );
    }
    out
}
