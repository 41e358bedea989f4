//! `cargo xtask`: a thin CLI over the `harness` library.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use harness::cluster::Backend;
use harness::render::{K8sVersion, LabFacts};
use harness::scenario::{self, LoadedScenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "kanidm-k8s-lab: Kubernetes OIDC with Kanidm, end to end",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List or validate scenario files.
    Scenarios {
        #[command(subcommand)]
        action: ScenariosCmd,
    },
    /// Print what a scenario would apply: Kanidm state, API server auth, RBAC, kind config.
    Render {
        /// Scenario name (file stem in scenarios/) or path.
        scenario: String,
        /// Kubernetes minor to render for.
        #[arg(long, default_value = "1.36")]
        k8s: K8sVersion,
        #[command(flatten)]
        images: ImageArgs,
    },
    /// Run scenarios against real servers and report every expectation.
    ///
    /// The matrix is every `--k8s` minor times every Kanidm (`--kanidmd`, `--kanidm-image`);
    /// Kanidm 1.10.x and 1.11.x are supported (others only with KANIDM_DEV_YOLO=1).
    E2e(E2eArgs),
    /// Like e2e, then print per-phase timings (control plane, Kanidm, logins, scenarios).
    Bench(E2eArgs),
    /// Benchmark logins alone: Kanidm in a scenario's state, chromedriver started once, then
    /// each person's first login (Kanidm's pages; the first one starts Chromium) and a
    /// single-sign-on login, each up to a verified id_token.
    BenchLogin {
        #[arg(long, default_value = "post1-structured")]
        scenario: String,
    },
    /// Download the pinned Kubernetes control plane of each minor (kube-apiserver,
    /// kube-controller-manager, kubectl), etcd and kind into the user cache, each verified
    /// against its published SHA-256.
    ///
    /// The cache is $LAB_CACHE_DIR, else $XDG_CACHE_HOME/kanidm-k8s-lab, else
    /// ~/.cache/kanidm-k8s-lab; never the repository. A mirror serves the upstream paths
    /// under its own base URL: release/<version>/bin/linux/<arch>/<binary>[.sha256]
    /// (dl.k8s.io), etcd-io/etcd/releases/download/<version>/… and
    /// kubernetes-sigs/kind/releases/download/<version>/… (github.com).
    Setup(SetupArgs),
    /// Say which real components are installed and how to get the missing ones.
    Doctor {
        #[command(flatten)]
        images: ImageArgs,
    },
    /// Leave Kanidm and a local API server running in a scenario's state (the posts' end state).
    Lab {
        #[command(subcommand)]
        action: LabCmd,
    },
    /// Leave only Kanidm running in a scenario's state (same code as e2e).
    Kanidm {
        #[command(subcommand)]
        action: LabCmd,
    },
    /// Remove leftovers of interrupted runs: labelled Kanidm containers, kind clusters named
    /// kanidm-lab-*, and lab directories whose process is gone.
    Clean,
    /// Explain why the API server would reject (or accept) a token: each check it makes, in
    /// its order, with the value seen, then the verdict and the fix.
    ///
    /// Exit 0 = the API server would accept the token (the mapped user is printed), 1 = it
    /// would reject it (the cause is printed), 2 = the input cannot be used (or a CEL
    /// function the configuration uses is not supported here).
    #[command(after_long_help = EXPLAIN_EXAMPLE)]
    Explain(ExplainArgs),
    /// Check a scenario's expectations against a cluster and Kanidm you already run,
    /// provisioning and changing nothing: each person's kubeconfig (or token) as is,
    /// `whoami`, reads as `kubectl auth can-i`, mutations as `--dry-run=server`. A 401 is
    /// diagnosed by `explain` when the API server's authentication is given.
    ///
    /// Exit 0 = every expectation held, 1 = one failed, 2 = unusable input.
    #[command(after_long_help = VERIFY_EXAMPLE)]
    Verify(VerifyArgs),
    /// The real kube-apiserver as the oracle for explain's validator: every configuration and
    /// CEL expression of the corpus (Kubernetes' documentation and tests, users' reports,
    /// generated mutations) is given to a real kube-apiserver, which refuses to start with
    /// field errors or gets past authentication, and to explain's validator; every
    /// disagreement is printed.
    ///
    /// Exit 0 = they agree on every case, 1 = a disagreement, 2 = no kube-apiserver.
    Conformance(ConformanceArgs),
    /// Exec credential plugin: print a client.authentication.k8s.io/v1 ExecCredential with the
    /// person's id_token, logging in through the browser when the cache is empty or expired.
    ExecCredential {
        #[arg(long)]
        lab: PathBuf,
        #[arg(long)]
        person: String,
    },
}

/// Real output (post 2 as written: kanidmd 1.10.4, the lab's kube-apiserver 1.36.2 flags).
const EXPLAIN_EXAMPLE: &str = r#"Example (post 2 as written; real output, the token and clock lines left out):
  $ cargo xtask explain --token datosh.cred.json --oidc-flags "--oidc-issuer-url=https://localhost:34561/oauth2/openid/k8s --oidc-client-id=k8s --oidc-ca-file=/work/main/.lab/lab/pki/ca.pem"
  authenticator --oidc-* flags (issuer https://localhost:34561/oauth2/openid/k8s)
     1. pass  issuer      token iss = issuer "https://localhost:34561/oauth2/openid/k8s"
     2. pass  discovery   https://localhost:34561/oauth2/openid/k8s/.well-known/openid-configuration: issuer matches; TLS verified against --oidc-ca-file=/work/main/.lab/lab/pki/ca.pem
     3. FAIL  algorithm   ES256 not in ["RS256"]

  verdict: Unauthorized (401), cause unsupported-signing-alg
    the API server logs: err="oidc: verify token: oidc: id token signed with unsupported algorithm, expected [\"RS256\"] got \"ES256\""
    hint: Kanidm signs ES256 by default; add --oidc-signing-algs=ES256 or enable legacy crypto (RS256) on the client
    kubectl only says: error: You must be logged in to the server (Unauthorized)"#;

/// Real output (post 1 on a `lab up` lab standing in for a homelab cluster).
const VERIFY_EXAMPLE: &str = r#"Example (after post 1: alice has view and not more; real output):
  $ cargo xtask verify --scenario post1-structured --user alice=alice.kubeconfig --auth-config /tmp/auth-config.yaml
        scenario          person  check                                       result
  ok    post1-structured  alice   token                                       token (ES256) from the kubeconfig, expires in 15 min 0 s
  ok    post1-structured  alice   whoami                                      user alice@localhost, groups [idm_all_persons@localhost, idm_all_accounts@localhost, idm_people_self_name_write@localhost, k8s_users@localhost, system:authenticated] (+4 UUIDs)
  ok    post1-structured  alice   allowed: list pods -A                       allowed
  ok    post1-structured  alice   allowed: get namespaces                     allowed
  ok    post1-structured  alice   forbidden: delete namespace scratch         Forbidden (403)
  ok    post1-structured  alice   forbidden: create namespace alice-was-here  Forbidden (403)
  ok    post1-structured  alice   forbidden: list secrets -n kube-system      Forbidden (403)

  7 checks, 7 passed, 0 failed

  not checked: bob: no --user bob=<kubeconfig> or --token bob=<file> given"#;

/// The API server's authentication as the user has it (explain's input; verify's, for a 401).
///
/// The three sources exclude each other; `--ca` and `--k8s` go with any of them (a group over
/// the whole struct would make them exclusive too, which broke the README's commands).
#[derive(clap::Args)]
#[group(skip)]
struct AuthArgs {
    /// The API server's --authentication-config file (AuthenticationConfiguration v1beta1/v1).
    #[arg(long, conflicts_with_all = ["oidc_flags", "manifest"])]
    auth_config: Option<PathBuf>,
    /// The API server's --oidc-* flags as written, e.g. "--oidc-issuer-url=https://… --oidc-client-id=k8s".
    #[arg(long, allow_hyphen_values = true, conflicts_with = "manifest")]
    oidc_flags: Option<String>,
    /// A kube-apiserver static pod manifest (/etc/kubernetes/manifests/kube-apiserver.yaml).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The CA the API server trusts for the issuer (replaces certificateAuthority /
    /// --oidc-ca-file; needed when that file is only on the control-plane node).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The API server's Kubernetes minor (which config versions it serves).
    #[arg(long, default_value = "1.36")]
    k8s: K8sVersion,
}

impl AuthArgs {
    fn source(&self) -> Option<harness::explain::AuthSource> {
        use harness::explain::AuthSource;
        match (&self.auth_config, &self.oidc_flags, &self.manifest) {
            (Some(p), _, _) => Some(AuthSource::ConfigFile(p.clone())),
            (_, Some(f), _) => Some(AuthSource::Flags(f.clone())),
            (_, _, Some(m)) => Some(AuthSource::Manifest(m.clone())),
            _ => None,
        }
    }
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("tok").required(true).args(["token", "kubeconfig"])))]
struct ExplainArgs {
    /// The token: a file or `-` (stdin) holding a JWT, an ExecCredential (kubelogin
    /// get-token output) or a kubelogin token-cache entry (~/.kube/cache/oidc-login/*).
    #[arg(long)]
    token: Option<PathBuf>,
    /// Take the token from this kubeconfig's user instead (token, tokenFile, or its exec
    /// plugin, run as kubectl would run it).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current-context).
    #[arg(long, requires = "kubeconfig")]
    context: Option<String>,
    #[command(flatten)]
    auth: AuthArgs,
    /// Do not contact the issuer: skip discovery and the signature check.
    #[arg(long)]
    offline: bool,
}

#[derive(clap::Args)]
struct ConformanceArgs {
    /// kube-apiserver binaries to judge with (repeatable; your own one, say). Default: each
    /// `--k8s` minor's, found as `e2e` finds it.
    #[arg(long = "kube-apiserver", value_name = "BINARY")]
    binaries: Vec<PathBuf>,
    /// Kubernetes minors, comma-separated (when no --kube-apiserver is given).
    #[arg(long, value_delimiter = ',', default_value = "1.36")]
    k8s: Vec<K8sVersion>,
    /// Only cases whose name or source contains this.
    #[arg(long)]
    only: Option<String>,
    /// kube-apiservers at a time (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print every case, not only the disagreements.
    #[arg(long)]
    all: bool,
    /// Print the corpus (name, slot, input, source) and exit.
    #[arg(long)]
    list: bool,
    /// Also judge 400+ tokens (mutations of a Kanidm id_token) with a running API server:
    /// etcd and the minor's kube-apiserver and kube-controller-manager, as the local backend
    /// starts them, trusting an issuer this run serves.
    #[arg(long)]
    tokens: bool,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Scenario name (file stem in scenarios/) or path; its top-level `expect:` is checked.
    #[arg(long)]
    scenario: String,
    /// A person's kubeconfig, e.g. `--user alice=~/.kube/alice.yaml` (repeatable; its
    /// current context, typically a kubelogin exec entry).
    #[arg(long = "user", value_name = "PERSON=KUBECONFIG", value_parser = person_path)]
    users: Vec<(String, PathBuf)>,
    /// Which user entry of that person's kubeconfig to use, as `kubectl --user` (e.g.
    /// `--kube-user datosh=oidc` for post 2's `kubectl --user=oidc`); default: the current
    /// context's user.
    #[arg(long = "kube-user", value_name = "PERSON=ENTRY", value_parser = person_entry)]
    kube_users: Vec<(String, String)>,
    /// A person's token file (JWT, ExecCredential or kubelogin cache entry), used with
    /// --cluster (repeatable).
    #[arg(long = "token", value_name = "PERSON=FILE", value_parser = person_path)]
    tokens: Vec<(String, PathBuf)>,
    /// A kubeconfig whose current context gives the API server and its CA (for --token).
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// The API server's authentication, so a 401 gets explain's diagnosis.
    #[command(flatten)]
    auth: AuthArgs,
    /// Write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// The kubectl to run (default: kubectl on PATH).
    #[arg(long, default_value = "kubectl")]
    kubectl: PathBuf,
}

fn person_entry(s: &str) -> std::result::Result<(String, String), String> {
    person_path(s).map(|(p, e)| (p, e.to_string_lossy().into_owned()))
}

fn person_path(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (p, f) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: write PERSON=PATH, e.g. alice=alice.kubeconfig"))?;
    if p.is_empty() || f.is_empty() {
        return Err(format!(
            "`{s}`: write PERSON=PATH, e.g. alice=alice.kubeconfig"
        ));
    }
    Ok((p.to_string(), PathBuf::from(f)))
}

#[derive(clap::Args)]
struct SetupArgs {
    /// Kubernetes minors, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1.36")]
    k8s: Vec<K8sVersion>,
    /// Base URL serving the upstream paths (air-gapped copies, tests).
    #[arg(long, env = "LAB_MIRROR")]
    mirror: Option<String>,
    /// Leave etcd alone.
    #[arg(long)]
    skip_etcd: bool,
    /// Leave kind alone.
    #[arg(long)]
    skip_kind: bool,
    /// Download even what is already installed.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Start and stay in the foreground until Ctrl-C or `down`.
    Up {
        #[arg(long)]
        scenario: String,
        #[arg(long, default_value = "1.36")]
        k8s: K8sVersion,
        /// Cluster backend for `lab up` (`kanidm up` starts only Kanidm, locally).
        #[arg(long, value_enum, default_value_t = Backend::Local)]
        backend: Backend,
        #[command(flatten)]
        images: ImageArgs,
    },
    /// Is it running? Where?
    Status,
    /// Stop a lab started by `up`.
    Down,
    /// Print a person's password and current TOTP code (for logging in by hand).
    Creds { person: String },
}

#[derive(Subcommand)]
enum ScenariosCmd {
    /// List shipped scenarios with their one-line description.
    List,
    /// Validate scenario files (all shipped ones if none are given), their API-server
    /// authentication as each given minor's kube-apiserver validates it at start.
    Check {
        files: Vec<PathBuf>,
        /// Kubernetes minors whose validation applies, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1.36")]
        k8s: Vec<K8sVersion>,
    },
}

#[derive(clap::Args, Clone)]
struct E2eArgs {
    /// Cluster backend; default: local if its binaries are found, else kind.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Kubernetes minors, comma-separated: each runs against its own API server (local:
    /// `$KUBEBUILDER_ASSETS/<minor>/`, the setup cache, …; kind: the minor's node image).
    #[arg(long, value_delimiter = ',', default_value = "1.36")]
    k8s: Vec<K8sVersion>,
    /// kanidmd binary for the local backend; repeatable: each is one value of the Kanidm
    /// axis of the matrix (default: $KANIDMD_BIN, PATH, else the Kanidm image).
    #[arg(long)]
    kanidmd: Vec<PathBuf>,
    /// Never download missing Kubernetes binaries (by default the local backend fetches a
    /// minor found nowhere, as `cargo xtask setup` does).
    #[arg(long)]
    no_download: bool,
    /// Download mirror (see `cargo xtask setup --help`).
    #[arg(long, env = "LAB_MIRROR")]
    mirror: Option<String>,
    /// Only scenarios whose name matches one of these globs, or scenario files given by
    /// path (`./my-bug.yaml`); comma-separated.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Where logs, rendered configs, screenshots and junit.xml go.
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Keep the lab's working directory (keys included) after the run.
    #[arg(long)]
    keep: bool,
    /// A fresh Kanidm, and logins through every page, whenever a scenario's Kanidm state
    /// differs from the previous one (slower; by default Kanidm is changed in place and
    /// people keep their sign-in).
    #[arg(long)]
    fresh_kanidm: bool,
    /// Also run `explain` on every token the API server answers and check that it agrees
    /// (verdict, cause, mapped user): one more check per expectation with a token.
    #[arg(long)]
    explain_check: bool,
    /// Run scenarios exactly in the given order (by default the kind backend runs the
    /// structured-config ones before the `--oidc-*` flag ones: fewer API server restarts).
    #[arg(long)]
    in_order: bool,
    #[command(flatten)]
    images: ImageArgs,
}

/// Images the kind backend runs instead of the pinned ones (air-gapped copies, mirrors,
/// local builds).
#[derive(clap::Args, Clone, Default)]
struct ImageArgs {
    /// kind node image for one Kubernetes minor, `<minor>=<image>`; repeatable or comma-separated.
    #[arg(long = "node-image", env = "LAB_NODE_IMAGES", value_delimiter = ',')]
    node_image: Vec<String>,
    /// Kanidm server image (kind; local when given or when no kanidmd is found). Repeatable
    /// or comma-separated: each is one value of the Kanidm axis of the matrix. Default:
    /// $LAB_KANIDM_IMAGE, else kanidm/server:1.10.4.
    #[arg(long, value_delimiter = ',')]
    kanidm_image: Vec<String>,
}

impl ImageArgs {
    fn overrides(&self) -> Result<harness::render::kind_config::ImageOverrides> {
        let mut o = harness::render::kind_config::ImageOverrides::default();
        for spec in &self.node_image {
            o.add_node_image(spec)
                .map_err(|e| anyhow::anyhow!("--node-image {e}"))?;
        }
        for k in &self.kanidm_image {
            harness::kanidm::container::split_image(k).context("--kanidm-image")?;
        }
        o.kanidm = match self.kanidm_image.first() {
            Some(k) => Some(k.clone()),
            None => std::env::var("LAB_KANIDM_IMAGE")
                .ok()
                .filter(|v| !v.is_empty()),
        };
        if let Some(k) = &o.kanidm {
            harness::kanidm::container::split_image(k).context("LAB_KANIDM_IMAGE")?;
        }
        Ok(o)
    }
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
        Command::Lab { action } => lab(action, true).await,
        Command::Kanidm { action } => lab(action, false).await,
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

async fn e2e(args: E2eArgs, bench: bool) -> Result<ExitCode> {
    let scenarios = select_scenarios(&args.scenario, &args.k8s)?;
    let places = harness::tools::Places::from_env();
    let backend = match args.backend {
        Some(b) => b,
        None if !harness::tools::local_minors(&places).await.is_empty() => Backend::Local,
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
    };
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
        if let Some(hwm) = peak_rss_kib() {
            println!(
                "  harness process peak RSS            {:>7.1} MB",
                hwm as f64 / 1024.0
            );
        }
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

/// This process's peak resident set size (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
