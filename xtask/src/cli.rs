//! The command line: every subcommand and its arguments (clap), with the examples `--help`
//! prints. `main.rs` dispatches them to the harness.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use harness::cluster::Backend;
use harness::render::K8sVersion;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "kanidm-k8s-lab: Kubernetes OIDC with Kanidm, end to end",
    version
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Merge JUnit reports (the shards of a CI matrix) into one.
    JunitMerge {
        /// The reports to merge, in order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where the merged report goes.
        #[arg(short, long)]
        output: PathBuf,
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
    /// kubelogin's --browser-command in a lab: log the person in headlessly through Kanidm's
    /// pages, ending at kubelogin's redirect listener.
    #[command(hide = true)]
    KubeloginBrowser {
        #[arg(long)]
        lab: PathBuf,
        #[arg(long)]
        person: String,
        /// The URL kubelogin opens.
        url: String,
    },
}

/// Real output (post 2 as written: kanidmd 1.10.4, the lab's kube-apiserver 1.36.2 flags).
pub(crate) const EXPLAIN_EXAMPLE: &str = r#"Example (post 2 as written; real output, the token and clock lines left out):
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
pub(crate) const VERIFY_EXAMPLE: &str = r#"Example (after post 1: alice has view and not more; real output):
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
pub(crate) struct AuthArgs {
    /// The API server's --authentication-config file (AuthenticationConfiguration v1beta1/v1).
    #[arg(long, conflicts_with_all = ["oidc_flags", "manifest"])]
    pub(crate) auth_config: Option<PathBuf>,
    /// The API server's --oidc-* flags as written, e.g. "--oidc-issuer-url=https://… --oidc-client-id=k8s".
    #[arg(long, allow_hyphen_values = true, conflicts_with = "manifest")]
    pub(crate) oidc_flags: Option<String>,
    /// A kube-apiserver static pod manifest (/etc/kubernetes/manifests/kube-apiserver.yaml).
    #[arg(long)]
    pub(crate) manifest: Option<PathBuf>,
    /// The CA the API server trusts for the issuer (replaces certificateAuthority /
    /// --oidc-ca-file; needed when that file is only on the control-plane node).
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// The API server's Kubernetes minor (which config versions it serves).
    #[arg(long, default_value = "1.36")]
    pub(crate) k8s: K8sVersion,
}

impl AuthArgs {
    pub(crate) fn source(&self) -> Option<harness::explain::AuthSource> {
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
pub(crate) struct ExplainArgs {
    /// The token: a file or `-` (stdin) holding a JWT, an ExecCredential (kubelogin
    /// get-token output) or a kubelogin token-cache entry (~/.kube/cache/oidc-login/*).
    #[arg(long)]
    pub(crate) token: Option<PathBuf>,
    /// Take the token from this kubeconfig's user instead (token, tokenFile, or its exec
    /// plugin, run as kubectl would run it).
    #[arg(long)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current-context).
    #[arg(long, requires = "kubeconfig")]
    pub(crate) context: Option<String>,
    #[command(flatten)]
    pub(crate) auth: AuthArgs,
    /// Do not contact the issuer: skip discovery and the signature check.
    #[arg(long)]
    pub(crate) offline: bool,
}

#[derive(clap::Args)]
pub(crate) struct ConformanceArgs {
    /// kube-apiserver binaries to judge with (repeatable; your own one, say). Default: each
    /// `--k8s` minor's, found as `e2e` finds it.
    #[arg(long = "kube-apiserver", value_name = "BINARY")]
    pub(crate) binaries: Vec<PathBuf>,
    /// Kubernetes minors, comma-separated (when no --kube-apiserver is given).
    #[arg(long, value_delimiter = ',', default_value = "1.36")]
    pub(crate) k8s: Vec<K8sVersion>,
    /// Only cases whose name or source contains this.
    #[arg(long)]
    pub(crate) only: Option<String>,
    /// kube-apiservers at a time (default: the number of cores).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
    /// Print every case, not only the disagreements.
    #[arg(long)]
    pub(crate) all: bool,
    /// Print the corpus (name, slot, input, source) and exit.
    #[arg(long)]
    pub(crate) list: bool,
    /// Also judge 294 tokens (mutations of a Kanidm id_token) with a running API server:
    /// etcd and the minor's kube-apiserver and kube-controller-manager, as the local backend
    /// starts them, trusting an issuer this run serves.
    #[arg(long)]
    pub(crate) tokens: bool,
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// Scenario name (file stem in scenarios/) or path; its top-level `expect:` is checked.
    #[arg(long)]
    pub(crate) scenario: String,
    /// A person's kubeconfig, e.g. `--user alice=~/.kube/alice.yaml` (repeatable; its
    /// current context, typically a kubelogin exec entry).
    #[arg(long = "user", value_name = "PERSON=KUBECONFIG", value_parser = person_path)]
    pub(crate) users: Vec<(String, PathBuf)>,
    /// Which user entry of that person's kubeconfig to use, as `kubectl --user` (e.g.
    /// `--kube-user datosh=oidc` for post 2's `kubectl --user=oidc`); default: the current
    /// context's user.
    #[arg(long = "kube-user", value_name = "PERSON=ENTRY", value_parser = person_entry)]
    pub(crate) kube_users: Vec<(String, String)>,
    /// A person's token file (JWT, ExecCredential or kubelogin cache entry), used with
    /// --cluster (repeatable).
    #[arg(long = "token", value_name = "PERSON=FILE", value_parser = person_path)]
    pub(crate) tokens: Vec<(String, PathBuf)>,
    /// A kubeconfig whose current context gives the API server and its CA (for --token).
    #[arg(long)]
    pub(crate) cluster: Option<PathBuf>,
    /// The API server's authentication, so a 401 gets explain's diagnosis.
    #[command(flatten)]
    pub(crate) auth: AuthArgs,
    /// Write JUnit XML here.
    #[arg(long)]
    pub(crate) junit: Option<PathBuf>,
    /// The kubectl to run (default: kubectl on PATH).
    #[arg(long, default_value = "kubectl")]
    pub(crate) kubectl: PathBuf,
}

pub(crate) fn person_entry(s: &str) -> std::result::Result<(String, String), String> {
    person_path(s).map(|(p, e)| (p, e.to_string_lossy().into_owned()))
}

pub(crate) fn person_path(s: &str) -> std::result::Result<(String, PathBuf), String> {
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
pub(crate) struct SetupArgs {
    /// Kubernetes minors, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1.36")]
    pub(crate) k8s: Vec<K8sVersion>,
    /// Base URL serving the upstream paths (air-gapped copies, tests).
    #[arg(long, env = "LAB_MIRROR")]
    pub(crate) mirror: Option<String>,
    /// Leave etcd alone.
    #[arg(long)]
    pub(crate) skip_etcd: bool,
    /// Leave kind alone.
    #[arg(long)]
    pub(crate) skip_kind: bool,
    /// Leave kubelogin alone.
    #[arg(long)]
    pub(crate) skip_kubelogin: bool,
    /// Download even what is already installed.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Subcommand)]
pub(crate) enum LabCmd {
    /// Start and stay in the foreground until Ctrl-C or `down`.
    Up {
        #[arg(long)]
        scenario: String,
        #[arg(long, default_value = "1.36")]
        k8s: K8sVersion,
        /// Cluster backend for `lab up` (`kanidm up` starts only Kanidm, locally).
        #[arg(long, value_enum, default_value_t = Backend::Local)]
        backend: Backend,
        /// Kubeconfigs through the lab's built-in exec plugin even when kubelogin is found
        /// (by default they use kubelogin's exec block, as the posts do).
        #[arg(long)]
        builtin_login: bool,
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
pub(crate) enum ScenariosCmd {
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
    /// Turn your own files into a scenario: the API server's authentication, RBAC, the
    /// kubeconfig user, the `kanidm` commands you ran (a script or a console transcript).
    /// Your issuer, domain and UUIDs become the lab's placeholders; the header says where
    /// each section came from, what was rewritten and what was not imported.
    ///
    /// Exit 0 = written (stdout or -o), 2 = an input the importer cannot map (each located).
    Import(ImportArgs),
}

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// The API server's `--authentication-config` file.
    #[arg(long, group = "auth")]
    pub(crate) auth_config: Option<PathBuf>,
    /// The kube-apiserver static pod manifest (its `--oidc-*` flags or config file).
    #[arg(long, group = "auth")]
    pub(crate) manifest: Option<PathBuf>,
    /// The `--oidc-*` flags, as one string.
    #[arg(long, group = "auth", allow_hyphen_values = true)]
    pub(crate) oidc_flags: Option<String>,
    /// RBAC manifests (files or directories of multi-document YAML); repeatable.
    #[arg(long)]
    pub(crate) rbac: Vec<PathBuf>,
    /// A kubeconfig whose user's exec block (kubelogin) becomes the login.
    #[arg(long)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The kubeconfig user (default: the current context's, else the one with an exec block).
    #[arg(long, requires = "kubeconfig")]
    pub(crate) kube_user: Option<String>,
    /// The `kanidm` (and `kubectl create …binding`) commands you ran.
    #[arg(long)]
    pub(crate) kanidm_commands: Option<PathBuf>,
    /// `NAME=VALUE` for `${NAME}` and `$(NAME)` in the commands (`--set whoami=alice`), or
    /// `<uuid>=<person>` for a subject bound by UUID; repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(crate) set: Vec<String>,
    /// The scenario's name (default: imported).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The Kubernetes minor whose kube-apiserver validates your authentication.
    #[arg(long, default_value = "1.36")]
    pub(crate) k8s: K8sVersion,
    /// Write the scenario here instead of stdout.
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub(crate) struct E2eArgs {
    /// Run only this shard of the selected scenarios, `k/n` (CI fans a matrix out over n
    /// runners): a scenario's shard is a hash of its name, stable as scenarios come and go;
    /// all its matrix cells run there. Merge the shards' junit.xml with `junit-merge`.
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<harness::run::shard::Shard>,
    /// Cluster backend; default: local if its binaries are found, else kind.
    #[arg(long, value_enum)]
    pub(crate) backend: Option<Backend>,
    /// Kubernetes minors, comma-separated: each runs against its own API server (local:
    /// `$KUBEBUILDER_ASSETS/<minor>/`, the setup cache, …; kind: the minor's node image).
    #[arg(long, value_delimiter = ',', default_value = "1.36")]
    pub(crate) k8s: Vec<K8sVersion>,
    /// kanidmd binary for the local backend; repeatable: each is one value of the Kanidm
    /// axis of the matrix (default: $KANIDMD_BIN, PATH, else the Kanidm image).
    #[arg(long)]
    pub(crate) kanidmd: Vec<PathBuf>,
    /// Never download missing Kubernetes binaries (by default the local backend fetches a
    /// minor found nowhere, as `cargo xtask setup` does).
    #[arg(long)]
    pub(crate) no_download: bool,
    /// Download mirror (see `cargo xtask setup --help`).
    #[arg(long, env = "LAB_MIRROR")]
    pub(crate) mirror: Option<String>,
    /// Only scenarios whose name matches one of these globs, or scenario files given by
    /// path (`./my-bug.yaml`); comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) scenario: Vec<String>,
    /// Where logs, rendered configs, screenshots and junit.xml go.
    #[arg(long)]
    pub(crate) artifacts: Option<PathBuf>,
    /// Keep the lab's working directory (keys included) after the run.
    #[arg(long)]
    pub(crate) keep: bool,
    /// A fresh Kanidm, and logins through every page, whenever a scenario's Kanidm state
    /// differs from the previous one (slower; by default Kanidm is changed in place and
    /// people keep their sign-in).
    #[arg(long)]
    pub(crate) fresh_kanidm: bool,
    /// Also run `explain` on every token the API server answers and check that it agrees
    /// (verdict, cause, mapped user): one more check per expectation with a token.
    #[arg(long)]
    pub(crate) explain_check: bool,
    /// How many labs run at once: matrix cells side by side first (each minor × Kanidm its
    /// own control plane, or its own kind cluster), then scenarios of a cell on several
    /// workers, each a lab of its own (local processes, or a kind cluster) (default: what the machine holds —
    /// cores and memory, said at the start; 1: one thing at a time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) jobs: Option<u16>,
    /// Run scenarios exactly in the given order (by default the kind backend runs the
    /// structured-config ones before the `--oidc-*` flag ones: fewer API server restarts).
    #[arg(long)]
    pub(crate) in_order: bool,
    #[command(flatten)]
    pub(crate) images: ImageArgs,
}

/// Images the kind backend runs instead of the pinned ones (air-gapped copies, mirrors,
/// local builds).
#[derive(clap::Args, Clone, Default)]
pub(crate) struct ImageArgs {
    /// kind node image for one Kubernetes minor, `<minor>=<image>`; repeatable or comma-separated.
    #[arg(long = "node-image", env = "LAB_NODE_IMAGES", value_delimiter = ',')]
    pub(crate) node_image: Vec<String>,
    /// Kanidm server image (kind; local when given or when no kanidmd is found). Repeatable
    /// or comma-separated: each is one value of the Kanidm axis of the matrix. Default:
    /// $LAB_KANIDM_IMAGE, else kanidm/server:1.10.4.
    #[arg(long, value_delimiter = ',')]
    pub(crate) kanidm_image: Vec<String>,
}

impl ImageArgs {
    pub(crate) fn overrides(&self) -> Result<harness::render::kind_config::ImageOverrides> {
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
