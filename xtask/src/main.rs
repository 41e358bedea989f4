//! `cargo xtask`: a thin CLI over the `harness` library.

use anyhow::{Context, Result, bail};
use clap::Parser;
use harness::cluster::Backend;
use harness::render::{K8sVersion, LabFacts};
use harness::scenario::{self, LoadedScenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cli;
use cli::*;

/// Exit codes, one per kind of failure (as cargo-nextest does):
/// 0 = everything held, 1 = an expectation failed (or the lab is not running, for `status`),
/// 2 = usage, scenario-file or setup error (clap also exits 2 on bad arguments),
/// 130 = interrupted.
fn expectation_failed() -> ExitCode {
    ExitCode::from(1)
}
fn setup_error() -> ExitCode {
    ExitCode::from(2)
}

fn kind_settings(images: &ImageArgs) -> Result<harness::cluster::kind::KindSettings> {
    Ok(harness::cluster::kind::KindSettings {
        configs: root().join("kind-configs"),
        images: images.overrides()?,
    })
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn scenarios_dir() -> PathBuf {
    root().join("scenarios")
}

fn resolve_scenario(arg: &str) -> Result<PathBuf> {
    let p = PathBuf::from(arg);
    if p.exists() {
        return Ok(p);
    }
    let named = scenarios_dir().join(format!("{arg}.yaml"));
    if named.exists() {
        return Ok(named);
    }
    let names: Vec<String> = scenario::discover(&scenarios_dir())?
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let hint = scenario::error::did_you_mean(arg, names.iter().map(String::as_str))
        .unwrap_or_else(|| "run `cargo xtask scenarios list`".into());
    bail!("no scenario `{arg}`\n  help: {hint}")
}

async fn conformance(a: ConformanceArgs) -> Result<ExitCode> {
    use harness::conformance;
    if a.list {
        for v in &a.k8s {
            print!("{}", conformance::list(v.minor));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut targets: Vec<(
        conformance::Target,
        Option<harness::tools::ControlPlaneBins>,
    )> = Vec::new();
    for b in &a.binaries {
        let version = harness::tools::k8s_binary_version(b).await?;
        let minor = harness::tools::minor_of(&version)
            .with_context(|| format!("{} says it is {version}", b.display()))?;
        targets.push((
            conformance::Target {
                binary: b.clone(),
                version,
                minor,
            },
            None,
        ));
    }
    if a.binaries.is_empty() {
        let places = harness::tools::Places::from_env();
        for v in &a.k8s {
            let bins = harness::tools::control_plane_for(&places, v.minor).await?;
            targets.push((
                conformance::Target {
                    binary: bins.apiserver.clone(),
                    version: bins.version.clone(),
                    minor: v.minor,
                },
                Some(bins),
            ));
        }
    }
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut disagreements = 0;
    for (t, bins) in &targets {
        eprintln!(
            "conformance: kube-apiserver {} ({}), {jobs} at a time",
            t.version,
            t.binary.display()
        );
        let report = conformance::run(t, a.only.as_deref(), jobs, |done, total| {
            eprint!("\r  {done}/{total} configurations judged");
        })
        .await?;
        eprintln!();
        print!("{}", conformance::render(&report, a.all));
        disagreements += report.disagreements().count();
        if a.tokens {
            let Some(bins) = bins else {
                bail!(
                    "--tokens needs a whole control plane: give --k8s <minor>, not --kube-apiserver"
                );
            };
            eprintln!(
                "tokens: kube-apiserver {} with etcd, and explain",
                t.version
            );
            let report = conformance::token_run::run(t, bins, |done, total| {
                eprint!("\r  {done}/{total} tokens judged");
            })
            .await?;
            eprintln!();
            print!("{}", conformance::token_run::render(&report, a.all));
            disagreements += report
                .results
                .iter()
                .filter(|r| !r.judgement.passed)
                .count();
        }
    }
    Ok(if disagreements == 0 {
        ExitCode::SUCCESS
    } else {
        expectation_failed()
    })
}

fn load_all() -> Result<Vec<LoadedScenario>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in scenario::discover(&scenarios_dir()).context("reading scenarios/")? {
        match scenario::load_file(&p) {
            Ok(s) => out.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(out)
}

fn main() -> ExitCode {
    harness::init_crypto();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The platform verifier logs every untrusted certificate at ERROR; explain
                // reports that itself (cause untrusted-ca).
                "warn,rustls_platform_verifier=off".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return setup_error();
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            setup_error()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Explain(a) => Ok(explain(a).await),
        Command::Conformance(a) => conformance(a).await,
        Command::Verify(a) => verify(a).await,
        Command::Scenarios {
            action: ScenariosCmd::List,
        } => {
            for s in load_all()? {
                println!(
                    "{:<34} {}",
                    s.name,
                    s.scenario.description.lines().next().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Scenarios {
            action: ScenariosCmd::Check { files, k8s },
        } => {
            let files = if files.is_empty() {
                scenario::discover(&scenarios_dir())?
            } else {
                files
            };
            let mut bad = 0;
            for f in &files {
                match harness::explain::validate::load_file(f, &k8s) {
                    Ok(s) => println!("ok    {} ({})", f.display(), s.name),
                    Err(e) => {
                        bad += 1;
                        println!("error {e}");
                    }
                }
            }
            println!("{} scenario(s) checked, {bad} with errors", files.len());
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                setup_error()
            })
        }
        Command::Scenarios {
            action: ScenariosCmd::Import(a),
        } => import(a),
        Command::Render {
            scenario,
            k8s,
            images,
        } => {
            let path = resolve_scenario(&scenario)?;
            let s = harness::explain::validate::load_file(&path, &[k8s])?;
            print!(
                "{}",
                harness::render::plan::render_all(
                    &s,
                    &LabFacts::example(&s),
                    k8s,
                    &root().join("kind-configs"),
                    &images.overrides()?
                )?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { images } => {
            let usable =
                harness::doctor::report(&images.overrides()?, &root().join("kind-configs")).await;
            Ok(if usable {
                ExitCode::SUCCESS
            } else {
                setup_error()
            })
        }
        Command::Setup(args) => setup(args).await,
        Command::BenchLogin { scenario } => {
            let s = scenario::load_file(&resolve_scenario(&scenario)?)?;
            let lines = harness::bench::logins(&s).await?;
            for l in lines {
                println!("{l}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Clean => clean().await,
        Command::JunitMerge { inputs, output } => {
            let (suites, cases) = harness::report::merge_junit(&inputs, &output)?;
            println!(
                "{}: {suites} suites, {cases} test cases from {} reports",
                output.display(),
                inputs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab { action } => lab(action, true).await,
        Command::Kanidm { action } => lab(action, false).await,
        Command::KubeloginBrowser { lab, person, url } => {
            harness::labkit::kubelogin_browser(&lab, &person, &url).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ExecCredential { lab, person } => {
            println!("{}", harness::labkit::exec_credential(&lab, &person).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::E2e(args) => e2e(args, false).await,
        Command::Bench(args) => e2e(args, true).await,
    }
}

/// `--scenario`: names matched as globs against the shipped scenarios, and files given by path.
fn select_scenarios(selectors: &[String], minors: &[K8sVersion]) -> Result<Vec<LoadedScenario>> {
    let (files, globs): (Vec<String>, Vec<String>) = selectors
        .iter()
        .cloned()
        .partition(|s| s.ends_with(".yaml") || s.ends_with(".yml"));
    let mut scenarios = if globs.is_empty() && !selectors.is_empty() {
        Vec::new()
    } else {
        load_all()?
    };
    if !globs.is_empty() {
        let pats = globs
            .iter()
            .map(|g| glob::Pattern::new(g).with_context(|| format!("--scenario {g}")))
            .collect::<Result<Vec<_>>>()?;
        scenarios.retain(|s| pats.iter().any(|p| p.matches(&s.name)));
        if scenarios.is_empty() {
            bail!(
                "no scenario matches `{}`\n  help: `cargo xtask scenarios list`",
                globs.join(",")
            );
        }
    }
    // Scenario files given by path (bug reproductions outside scenarios/).
    for f in &files {
        scenarios.push(scenario::load_file(Path::new(f))?);
    }
    // What each minor's API server would refuse to start with is an error now, not later.
    let mut errors = Vec::new();
    for s in &scenarios {
        if let Err(e) = harness::explain::validate::scenario(s, minors) {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(scenarios)
}

async fn setup(args: SetupArgs) -> Result<ExitCode> {
    use harness::setup;
    let cache =
        harness::tools::cache_dir().context("no cache directory: set LAB_CACHE_DIR (or HOME)")?;
    let src = setup::Source::new(args.mirror.as_deref())?;
    let progress = harness::progress::Progress::default();
    let places = harness::tools::Places::from_env();
    let mut plan = setup::Plan {
        k8s: Vec::new(),
        etcd: false,
        kind: false,
        kubelogin: false,
    };
    for v in &args.k8s {
        setup::k8s_release(*v)?;
        match harness::tools::control_plane_for(&places, v.minor).await {
            Ok(b) if !args.force => println!(
                "Kubernetes {v}: {} already here ({}, {}); --force downloads it anyway",
                b.version,
                b.via,
                b.apiserver.display()
            ),
            _ => plan.k8s.push(*v),
        }
    }
    for (tool, skip, wanted) in [
        (harness::tools::ETCD, args.skip_etcd, &mut plan.etcd),
        (harness::tools::KIND, args.skip_kind, &mut plan.kind),
        (
            harness::tools::KUBELOGIN,
            args.skip_kubelogin,
            &mut plan.kubelogin,
        ),
    ] {
        match tool.find() {
            _ if skip => {}
            Some(f) if !args.force => println!(
                "{}: already here ({}, {}); --force downloads it anyway",
                tool.name,
                f.via,
                f.path.display()
            ),
            _ => *wanted = true,
        }
    }
    let t = std::time::Instant::now();
    let lines = tokio::select! {
        r = setup::run(&src, &cache, &plan, &progress) => r?,
        sig = stop_signal() => {
            eprintln!("interrupted ({sig}): partial downloads removed, nothing half-installed");
            return Ok(ExitCode::from(130));
        }
    };
    for l in &lines {
        println!("{l}");
    }
    println!(
        "cache: {} ({} item(s) installed in {:.1} s)",
        cache.display(),
        lines.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `scenarios import`: the user's files in, a scenario out (or every located error).
fn import(a: cli::ImportArgs) -> Result<ExitCode> {
    use harness::explain::source::AuthSource;
    let auth = match (&a.auth_config, &a.manifest, &a.oidc_flags) {
        (Some(f), _, _) => Some((
            AuthSource::ConfigFile(f.clone()),
            format!("--auth-config {}", f.display()),
        )),
        (_, Some(f), _) => Some((
            AuthSource::Manifest(f.clone()),
            format!("--manifest {}", f.display()),
        )),
        (_, _, Some(s)) => Some((AuthSource::Flags(s.clone()), "--oidc-flags".to_string())),
        _ => None,
    };
    let mut set = std::collections::BTreeMap::new();
    for kv in &a.set {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("error: --set {kv}: write NAME=VALUE");
            return Ok(setup_error());
        };
        set.insert(k.to_string(), v.to_string());
    }
    let inputs = harness::import::Inputs {
        auth,
        rbac: a.rbac,
        kubeconfig: a.kubeconfig,
        kube_user: a.kube_user,
        kanidm_commands: a.kanidm_commands,
        set,
        name: a.name,
        k8s: Some(a.k8s),
        kubelogin_found: harness::tools::KUBELOGIN.find().is_some(),
    };
    match harness::import::import(&inputs) {
        Ok(yaml) => {
            match &a.output {
                Some(p) => {
                    std::fs::write(p, &yaml).with_context(|| format!("writing {}", p.display()))?;
                    eprintln!(
                        "wrote {}; next: cargo xtask scenarios check {0}, then cargo xtask e2e --scenario {0}",
                        p.display()
                    );
                }
                None => print!("{yaml}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error {e}");
            }
            eprintln!("{} input error(s); nothing written", errors.len());
            Ok(setup_error())
        }
    }
}

async fn e2e(args: E2eArgs, bench: bool) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut scenarios = select_scenarios(&args.scenario, &args.k8s)?;
    if let Some(shard) = args.shard {
        let all = scenarios.len();
        scenarios.retain(|s| shard.holds(&s.name));
        eprintln!(
            "shard {shard}: {} of the {all} selected scenarios ({})",
            scenarios.len(),
            scenarios
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if scenarios.is_empty() {
            println!("shard {shard} holds none of the selected scenarios: nothing to run");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let places = harness::tools::Places::from_env();
    let backend = match args.backend {
        Some(b) => b,
        None if harness::tools::local_control_plane_present(&places) => Backend::Local,
        None if harness::tools::KIND.find().is_some() => Backend::Kind,
        None if !args.no_download => Backend::Local,
        None => bail!(
            "no cluster backend available: neither kube-apiserver nor kind was found\n  help: `cargo xtask setup` downloads them; `cargo xtask doctor` says what else is missing"
        ),
    };
    let mut kanidm: Vec<harness::kanidm::KanidmSource> = args
        .kanidmd
        .iter()
        .map(|p| harness::kanidm::KanidmSource::Binary(p.clone()))
        .collect();
    for i in &args.images.kanidm_image {
        kanidm.push(harness::kanidm::KanidmSource::Image(i.clone()));
    }
    let fetch_missing = match args.no_download {
        true => None,
        false => Some(harness::setup::Source::new(args.mirror.as_deref())?),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let artifacts = args
        .artifacts
        .clone()
        .unwrap_or_else(|| root().join("artifacts").join(format!("run-{stamp}")));
    std::fs::create_dir_all(&artifacts)?;
    let opts = harness::run::E2eOptions {
        scenarios,
        k8s: args.k8s.clone(),
        backend,
        artifacts: artifacts.clone(),
        keep: args.keep,
        fresh_kanidm: args.fresh_kanidm,
        kind: kind_settings(&args.images)?,
        order_for_speed: !args.in_order,
        kanidm,
        default_kanidm_image: args.images.overrides()?.kanidm_image().to_string(),
        places,
        fetch_missing,
        explain_check: args.explain_check,
        jobs: args.jobs.map(usize::from),
    };
    let before_run = started.elapsed();
    let run = harness::run::e2e(opts);
    let report = tokio::select! {
        r = run => r?,
        sig = stop_signal() => {
            eprintln!("interrupted ({sig}): everything started by this run has been stopped");
            return Ok(ExitCode::from(130));
        }
    };
    println!("\n{}", harness::report::summary_table(&report.results));
    if bench {
        println!("timings (benchmark)\n{}", report.timings.render());
        print!(
            "{}",
            harness::bench::resources(
                started.elapsed(),
                before_run,
                report.concurrency,
                report.cells_at_once
            )
        );
    }
    if !report.versions.is_empty() {
        let v: Vec<String> = report
            .versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("components: {}", v.join(", "));
    }
    println!("artifacts: {}", report.artifacts.display());
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        expectation_failed()
    })
}

fn lab_dir(with_cluster: bool) -> PathBuf {
    root()
        .join(".lab")
        .join(if with_cluster { "lab" } else { "kanidm" })
}

/// How to use a lab that is up: URLs, the CA, a kubectl line per person.
async fn lab(action: LabCmd, with_cluster: bool) -> Result<ExitCode> {
    let dir = lab_dir(with_cluster);
    let what = if with_cluster { "lab" } else { "kanidm" };
    match action {
        LabCmd::Up {
            scenario,
            k8s,
            backend,
            builtin_login,
            images,
        } => {
            let s = scenario::load_file(&resolve_scenario(&scenario)?)?;
            let exe =
                std::env::current_exe().context("locating the xtask binary for the exec plugin")?;
            if !with_cluster && backend != Backend::Local {
                bail!(
                    "`kanidm up` starts only Kanidm, as a local process; use `lab up --backend kind` for a kind cluster"
                );
            }
            let opts = harness::labkit::UpOptions {
                with_cluster,
                k8s,
                backend,
                kind: kind_settings(&images)?,
                kanidm: images
                    .kanidm_image
                    .first()
                    .map(|i| harness::kanidm::KanidmSource::Image(i.clone())),
                kubelogin: !builtin_login,
            };
            // Interrupted start-up (Ctrl-C, SIGTERM, SIGHUP) drops what was started: processes,
            // the Kanidm container and the kind cluster clean up on drop.
            let running = tokio::select! {
                r = harness::labkit::up(&s, &dir, &opts, &exe) => r?,
                sig = stop_signal() => {
                    let _ = std::fs::remove_dir_all(&dir);
                    eprintln!("interrupted ({sig}): everything started so far has been stopped");
                    return Ok(ExitCode::from(130));
                }
            };
            print!("{}", harness::labkit::up_message(what, &running.state));
            println!("Stop with Ctrl-C or `cargo xtask {what} down`.");
            stop_signal().await;
            running.shutdown().await;
            println!("{what} stopped");
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Status => {
            let st = harness::labkit::read_state(&dir)?;
            let alive = st.owner_running();
            println!(
                "{what} `{}`: {} (pid {})",
                st.scenario,
                if alive {
                    "running"
                } else {
                    "NOT running (stale)"
                },
                st.pid
            );
            println!("  Kanidm: {}", st.kanidm_origin);
            if let Some(api) = &st.api_server {
                println!("  API server: {api}");
            }
            Ok(if alive {
                ExitCode::SUCCESS
            } else {
                expectation_failed()
            })
        }
        LabCmd::Down => {
            println!("{}", harness::labkit::down(&dir).await?);
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Creds { person } => {
            let st = harness::labkit::read_state(&dir)?;
            let p = st
                .persons
                .get(&person)
                .with_context(|| format!("no person `{person}` in this {what}"))?;
            println!("username: {person}");
            println!("password: {}", p.password);
            match &st.kubelogin {
                Some(k) => println!(
                    "kubectl logs in through {k} (its --browser-command is a headless lab browser)"
                ),
                None => {
                    println!("kubectl logs in through the lab's exec plugin (kubelogin not found)")
                }
            }
            if let Some(code) = p.current_totp() {
                println!(
                    "TOTP now: {code}  (codes are single-use; wait for the next 30 s step if it was just used)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The first of SIGINT, SIGTERM or SIGHUP; its name.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn clean() -> Result<ExitCode> {
    let report = harness::cleanup::clean(&root().join(".lab")).await;
    for line in &report {
        println!("{line}");
    }
    if report.is_empty() {
        println!("nothing to clean");
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain(a: ExplainArgs) -> ExitCode {
    use harness::explain::{self, TokenSource};
    let Some(auth) = a.auth.source() else {
        eprintln!(
            "error: explain needs the API server's authentication: --auth-config, --oidc-flags or --manifest"
        );
        return setup_error();
    };
    let token = match (a.token, a.kubeconfig) {
        (Some(t), _) => TokenSource::File(t),
        (_, Some(path)) => TokenSource::Kubeconfig {
            path,
            context: a.context,
        },
        _ => {
            eprintln!("error: give --token or --kubeconfig");
            return setup_error();
        }
    };
    let req = explain::Request {
        token,
        auth,
        ca: a.auth.ca.clone(),
        k8s: a.auth.k8s,
        offline: a.offline,
    };
    match explain::explain(&req).await {
        Ok(e) => {
            print!("{}", explain::render(&e, a.auth.k8s));
            ExitCode::from(explain::exit_code(&e.explanation.verdict) as u8)
        }
        Err(e) => {
            eprintln!("error: {e}");
            setup_error()
        }
    }
}

async fn verify(a: VerifyArgs) -> Result<ExitCode> {
    use harness::verify::{Credential, VerifyOptions};
    let scenario = scenario::load_file(&resolve_scenario(&a.scenario)?)?;
    let mut people = std::collections::BTreeMap::new();
    let mut entries: std::collections::BTreeMap<String, String> =
        a.kube_users.into_iter().collect();
    for (p, f) in a.users {
        let user = entries.remove(&p);
        people.insert(p, Credential::Kubeconfig { path: f, user });
    }
    if let Some(p) = entries.keys().next() {
        bail!("--kube-user {p}=… names a user entry, but there is no --user {p}=<kubeconfig>");
    }
    for (p, f) in a.tokens {
        if a.cluster.is_none() {
            bail!("--token {p}=… needs --cluster <kubeconfig> (the API server's address and CA)");
        }
        people.insert(p, Credential::Token(f));
    }
    for p in people.keys() {
        if !scenario
            .scenario
            .expect
            .iter()
            .any(|e| &e.person.value == p)
        {
            let names: Vec<&str> = scenario
                .scenario
                .expect
                .iter()
                .map(|e| e.person.value.as_str())
                .collect();
            bail!(
                "`{p}` has no expectation in {}; it checks {}",
                scenario.name,
                names.join(", ")
            );
        }
    }
    let auth = a.auth.source();
    let kubectl = which::which(&a.kubectl)
        .with_context(|| format!("`{}` not found; pass --kubectl <path>", a.kubectl.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("kanidm-lab-verify-")
        .tempdir()
        .context("creating a private scratch folder")?;
    let opts = VerifyOptions {
        scenario,
        people,
        cluster: a.cluster,
        auth,
        ca: a.auth.ca.clone(),
        k8s: a.auth.k8s,
        kubectl,
        scratch: scratch.path().to_path_buf(),
    };
    let report = tokio::select! {
        r = harness::verify::verify(&opts) => r?,
        sig = stop_signal() => {
            eprintln!("interrupted ({sig})");
            return Ok(ExitCode::from(130));
        }
    };
    if report.results.is_empty() {
        for n in &report.notes {
            eprintln!("not checked: {n}");
        }
        bail!(
            "nothing was checked: give at least one person's kubeconfig with --user <person>=<kubeconfig>"
        );
    }
    println!("{}", harness::report::summary_table(&report.results));
    for n in &report.notes {
        println!("not checked: {n}");
    }
    if let Some(j) = &a.junit {
        harness::report::write_junit(&report.results, j, "verify")?;
        println!("junit: {}", j.display());
    }
    Ok(if report.results.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        expectation_failed()
    })
}
