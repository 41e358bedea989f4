//! `cargo xtask scenarios import`: a homelab's own files — the API server's authentication
//! (config file, static pod manifest or `--oidc-*` flags), its RBAC, the kubeconfig user,
//! the `kanidm` commands that were run — turned into a scenario the lab can run before the
//! cluster is touched, and `verify` can check against the cluster after. Every rewrite of
//! their names into the lab's placeholders, and everything not imported, is in the header.

pub mod api_server;
pub mod expect;
pub mod kanidm_cli;
pub mod login;
pub mod rbac;
pub mod rewrite;
pub mod transcript;

use crate::explain::source::AuthSource;
use crate::render::K8sVersion;
use rewrite::{Log, Origin};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Any input file larger than this is refused (a post's files are a few KiB).
const MAX_INPUT: u64 = 1 << 20;

/// What the user hands over.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `--auth-config`, `--manifest` or `--oidc-flags`, and how it was given.
    pub auth: Option<(AuthSource, String)>,
    pub rbac: Vec<PathBuf>,
    pub kubeconfig: Option<PathBuf>,
    pub kube_user: Option<String>,
    pub kanidm_commands: Option<PathBuf>,
    /// `--set NAME=VALUE`: variables and `$(command)` values of the commands file, and
    /// `<uuid>=<person>` for subjects bound by UUID.
    pub set: BTreeMap<String, String>,
    pub name: Option<String>,
    pub k8s: Option<K8sVersion>,
    /// Whether kubelogin is found here (its exec block is then the login).
    pub kubelogin_found: bool,
}

/// An input the importer cannot map, located where it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// `file:line:column`, `file`, or the flag it came from.
    pub at: String,
    pub message: String,
    pub help: Option<String>,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

fn ierr(at: impl Into<String>, message: impl Into<String>, help: Option<String>) -> ImportError {
    ImportError {
        at: at.into(),
        message: message.into(),
        help,
    }
}

fn read(path: &Path, what: &str) -> Result<String, ImportError> {
    crate::input_file::read_text(path, MAX_INPUT, what)
        .map_err(|e| ierr(path.display().to_string(), e.to_string(), None))
}

/// A post's own placeholders (`<MY KANIDM ADDRESS>`) made a host name the API server's
/// validator accepts (`my-kanidm-address.invalid`), the same in every file; each one noted.
fn unplaceholder(text: &str, log: &mut Log) -> String {
    let re = regex::Regex::new(r"<([A-Za-z][A-Za-z0-9 _-]{0,40})>").ok();
    let Some(re) = re else {
        return text.to_string();
    };
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let host = format!(
            "{}.invalid",
            c[1].trim().to_ascii_lowercase().replace([' ', '_'], "-")
        );
        log.note(format!(
            "`{}` (a placeholder in your file) → the host `{host}`, then the lab's",
            &c[0]
        ));
        host
    })
    .into_owned()
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The scenario, as YAML with its header, for `inputs`.
pub fn import(inputs: &Inputs) -> Result<String, Vec<ImportError>> {
    let mut errors = Vec::new();
    let mut not_imported = Vec::new();
    let mut sources = Vec::new();
    let mut log = Log::default();
    let k8s = inputs.k8s.unwrap_or(K8sVersion::DEFAULT);
    // 1. The commands they ran (Kanidm, kubectl RBAC lines, oidc-login setup).
    let mut cmds = Vec::new();
    let mut cmd_file = String::new();
    if let Some(p) = &inputs.kanidm_commands {
        cmd_file = p.display().to_string();
        let text = read(p, "the commands file").map_err(|e| vec![e])?;
        match transcript::read(&unplaceholder(&text, &mut log), &inputs.set) {
            Ok(c) => cmds = c,
            Err(e) => {
                return Err(vec![ierr(
                    format!("{cmd_file}:{}:{}", e.line, e.column),
                    e.message,
                    e.help,
                )]);
            }
        }
        sources.push(format!("kanidm: the commands in {cmd_file}"));
    }
    // 2. The user's Kanidm: issuer, domain, UUIDs.
    let mut origin = Origin::default();
    for (k, v) in &inputs.set {
        if looks_like_uuid(k) {
            origin.uuids.insert(k.clone(), v.clone());
        }
    }
    for c in &cmds {
        if c.words.len() >= 4 && c.words[..3] == ["kanidm", "person", "get"] {
            for l in &c.output {
                if let Some(u) = l
                    .strip_prefix("uuid:")
                    .map(str::trim)
                    .filter(|u| looks_like_uuid(u))
                {
                    origin.uuids.insert(u.to_string(), c.words[3].clone());
                }
            }
        }
    }
    let auth = match &inputs.auth {
        Some((AuthSource::ConfigFile(p), what)) => {
            let text = read(p, "the authentication config").map_err(|e| vec![e])?;
            Some((
                AuthSource::ConfigText {
                    text: unplaceholder(&text, &mut log),
                    origin: p.display().to_string(),
                },
                what.clone(),
            ))
        }
        Some((AuthSource::Flags(f), what)) => {
            Some((AuthSource::Flags(unplaceholder(f, &mut log)), what.clone()))
        }
        other => other.clone(),
    };
    let auths = match &auth {
        Some((src, what)) => match crate::explain::source::load(src, k8s, None) {
            Ok(a) => {
                sources.push(format!("apiServer: {what}"));
                a
            }
            Err(e) => return Err(vec![ierr(what.clone(), e.0, Some("the lab validates it as kube-apiserver would at start; fix the file first (`cargo xtask explain` shows the same checks)".into()))]),
        },
        None => Vec::new(),
    };
    let kubeconfig_exec = match &inputs.kubeconfig {
        Some(p) => {
            Some(kubeconfig_user(p, inputs.kube_user.as_deref(), &mut log).map_err(|e| vec![e])?)
        }
        None => None,
    };
    let setup_cmd = cmds
        .iter()
        .find(|c| c.words.len() >= 3 && c.words[..3] == ["kubectl", "oidc-login", "setup"]);
    let issuer = auths
        .iter()
        .map(|a| a.issuer_url.clone())
        .chain(
            kubeconfig_exec
                .iter()
                .flat_map(|(_, (_, args, _))| issuer_arg(args)),
        )
        .chain(setup_cmd.iter().flat_map(|c| issuer_arg(&c.words[2..])))
        .find(|u| rewrite::kanidm_issuer(u).is_some());
    if let Some(u) = &issuer
        && let Some((client, host)) = rewrite::kanidm_issuer(u)
    {
        origin.issuer = Some(u.clone());
        origin.client = Some(client);
        origin.domain = Some(host);
    }
    // 3. Kanidm state, RBAC lines, setup.
    let mut kb = kanidm_cli::Builder::default();
    let mut rb = rbac::RbacImport::default();
    for c in &cmds {
        let at = format!("{cmd_file}:{}:{}", c.line, c.column);
        match c.words.first().map(String::as_str) {
            Some("kanidm") => match kb.apply(&c.words) {
                Ok(kanidm_cli::Effect::Applied) => {}
                Ok(kanidm_cli::Effect::NotImported(why)) => {
                    not_imported.push(format!("{at}: {why}"))
                }
                Err(e) => errors.push(ierr(at, e.message, e.help)),
            },
            Some("kubectl") if c.words.get(1).map(String::as_str) == Some("create") => {
                if let Err(e) = rb.kubectl_create(&c.words[1..], &origin, &mut log) {
                    errors.push(ierr(at, e, None));
                }
            }
            Some("kubectl")
                if c.words.get(1).map(String::as_str) == Some("oidc-login")
                    && c.words.get(2).map(String::as_str) == Some("setup") => {}
            _ => not_imported.push(format!(
                "{at}: `{}`: not a Kanidm or RBAC change",
                c.words.join(" ")
            )),
        }
    }
    not_imported.append(&mut kb.notes);
    // The `# credentials for …` lines `render` prints.
    if let Some(p) = &inputs.kanidm_commands
        && let Ok(text) = read(p, "the commands file")
    {
        for l in text.lines() {
            kb.credential_comment(l);
        }
    }
    for f in &inputs.rbac {
        match rbac_files(f) {
            Ok(files) => {
                for file in files {
                    let name = file.display().to_string();
                    let text = match read(&file, "an RBAC file") {
                        Ok(t) => unplaceholder(&t, &mut log),
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    };
                    let docs: Vec<Value> = match serde_saphyr::from_multiple(&text) {
                        Ok(d) => d,
                        Err(e) => {
                            errors.push(ierr(
                                name.clone(),
                                format!("not YAML: {}", crate::input_file::yaml_error(&e)),
                                None,
                            ));
                            continue;
                        }
                    };
                    let starts = doc_starts(&text);
                    for (i, d) in docs.iter().enumerate() {
                        let at = rbac::At {
                            file: &name,
                            line: starts.get(i).copied().unwrap_or(1),
                        };
                        if let Err(e) = rb.document(d, &at, &origin, &mut log) {
                            errors.push(ierr(name.clone(), e, None));
                        }
                    }
                }
                sources.push(format!("rbac: {}", f.display()));
            }
            Err(e) => errors.push(e),
        }
    }
    for r in rb.unknown_roles() {
        errors.push(ierr(
            "rbac",
            format!("a binding refers to ClusterRole `{r}`, which is neither built in nor in the imported files"),
            Some("add the file that defines it to --rbac, or bind view, edit, admin or cluster-admin".into()),
        ));
    }
    not_imported.append(&mut rb.not_imported);
    if !errors.is_empty() {
        return Err(errors);
    }
    // 4. The API server section (needs the client name).
    let api = if auths.is_empty() {
        let Some(client) = origin.client.clone() else {
            return Err(vec![ierr(
                "inputs",
                "nothing says which issuer the API server trusts",
                Some("give --auth-config <file>, --manifest <kube-apiserver.yaml> or --oidc-flags \"…\"".into()),
            )]);
        };
        not_imported.push("no API-server authentication given: post 1's structured config (preferred_username, groups) stands in".into());
        json!({"structured": {"jwt": [{"issuer": {"client": client}, "claimMappings": {"username": {"claim": "preferred_username", "prefix": ""}, "groups": {"claim": "groups", "prefix": ""}}}]}})
    } else {
        api_server::section(&auths, &origin, &mut log, &mut not_imported).map_err(|e| {
            vec![ierr(
                inputs
                    .auth
                    .as_ref()
                    .map(|a| a.1.clone())
                    .unwrap_or_default(),
                e,
                None,
            )]
        })?
    };
    let client = origin.client.clone().unwrap_or_default();
    // 5. Kanidm: theirs, or a stand-in when no commands were given.
    let mut state = kb.state;
    if inputs.kanidm_commands.is_none() {
        state = expect::stand_in_kanidm(&client, &rb.bindings);
        not_imported.push("no `kanidm` commands given: a stand-in Kanidm with the client, the groups RBAC binds, and one person per group".into());
    }
    if !state.oauth2_clients.iter().any(|c| c.name.value == client) {
        return Err(vec![ierr(
            if cmd_file.is_empty() {
                "inputs".to_string()
            } else {
                cmd_file.clone()
            },
            format!(
                "the API server trusts Kanidm client `{client}`, which the kanidm commands never create"
            ),
            Some(format!(
                "add `kanidm system oauth2 create-public {client} <display name> <landing url>` (and its scope maps)"
            )),
        )]);
    }
    if state.persons.is_empty() {
        return Err(vec![ierr(
            if cmd_file.is_empty() { "inputs".to_string() } else { cmd_file.clone() },
            "nobody to log in: the commands create no person and add nobody to a group",
            Some("add the `kanidm person create` / `kanidm group add-members` lines you ran (or --set the name `$(whoami)` stands for)".into()),
        )]);
    }
    // 6. Login.
    let mut login_notes = Vec::new();
    let login = if let Some((user, (v, args, mode))) = &kubeconfig_exec {
        sources.push(format!("login: the exec block of kubeconfig user `{user}`"));
        let clean = login::clean_args(args, &origin, &mut log, &mut login_notes);
        login::section(&client, v, &clean, mode.as_deref(), false, inputs.kubelogin_found, &mut login_notes)
    } else if let Some(c) = setup_cmd {
        sources.push(format!("login: `kubectl oidc-login setup` at {cmd_file}:{}", c.line));
        let clean = login::clean_args(&c.words[2..], &origin, &mut log, &mut login_notes);
        login::section(&client, "client.authentication.k8s.io/v1", &clean, Some("Never"), true, inputs.kubelogin_found, &mut login_notes)
    } else {
        login_notes.push("no kubeconfig or `oidc-login setup` given: the built-in client logs in with the client's scope-map scopes".into());
        Ok(expect::default_login(&state, &client))
    }
    .map_err(|e| vec![ierr("login", e, None)])?;
    not_imported.extend(login_notes);
    // 7. Expectations from the RBAC.
    let expectations = expect::skeleton(&state, &api, &login, &rb.bindings, &client);
    let name = inputs.name.clone().unwrap_or_else(|| "imported".into());
    let mut sections: Vec<(&str, Value)> = vec![
        ("name", json!(name)),
        (
            "description",
            json!(format!(
                "Imported with `cargo xtask scenarios import` from {}",
                sources
                    .iter()
                    .map(|s| s.split_once(": ").map(|x| x.1).unwrap_or(s))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        ),
        (
            "kanidm",
            prune(serde_json::to_value(&state).unwrap_or(Value::Null)),
        ),
        ("apiServer", api),
    ];
    if !rb.bindings.is_empty() || !rb.cluster_roles.is_empty() {
        let mut r = json!({});
        if !rb.cluster_roles.is_empty() {
            r["clusterRoles"] = json!(rb.cluster_roles);
        }
        if !rb.bindings.is_empty() {
            r["bindings"] = json!(rb.bindings);
        }
        sections.push(("rbac", r));
    }
    sections.push(("login", login));
    sections.push(("expect", expectations));
    // One section at a time, in the order people read a scenario.
    let mut body = String::new();
    for (k, v) in sections {
        let one = serde_saphyr::to_string(&json!({ k: v }))
            .map_err(|e| vec![ierr("output", format!("writing YAML: {e}"), None)])?;
        body.push_str(&one);
    }
    let mut header = String::from(
        "# Imported by `cargo xtask scenarios import`. Where each section came from:\n",
    );
    for s in &sources {
        header.push_str(&format!("#   {s}\n"));
    }
    header.push_str("#   expect: derived from the RBAC bindings and group memberships; edit it to say what you expect\n");
    if !log.0.is_empty() {
        header.push_str("# The lab's own names replace yours (its Kanidm has its own origin, domain and UUIDs):\n");
        for l in &log.0 {
            header.push_str(&format!("#   {l}\n"));
        }
    }
    for n in &not_imported {
        header.push_str(&format!("# not imported: {}\n", n.replace('\n', " ")));
    }
    let out = format!("{header}{body}");
    // The result must be a scenario the lab loads.
    if let Err(e) = crate::scenario::load_str(Path::new("imported.yaml"), &out) {
        return Err(e
            .0
            .iter()
            .map(|x| ierr("the imported scenario", x.to_string(), Some("the importer wrote a scenario the lab does not load: a bug in the importer or an input it maps wrongly; please report it with the inputs".into())))
            .collect());
    }
    Ok(out)
}

/// The Kanidm section without what a scenario leaves out: nulls, empty lists, and the
/// schema's defaults (`public: true`, `false` flags, `credential: password-totp`).
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| {
                    !(v.is_null()
                        || v.as_array().is_some_and(|a| a.is_empty())
                        || (k == "public" && *v == json!(true))
                        || (k != "public" && *v == json!(false))
                        || (k == "credential" && *v == json!("password-totp")))
                })
                .map(|(k, v)| (k, prune(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        other => other,
    }
}

/// `--oidc-issuer-url` of kubelogin arguments.
fn issuer_arg(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--oidc-issuer-url=")
            .map(str::to_string)
            .or_else(|| {
                (a == "--oidc-issuer-url")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    })
}

/// The line each YAML document starts on (after `---` separators).
fn doc_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (i, l) in text.lines().enumerate() {
        if l.trim_end() == "---" && i > 0 {
            starts.push(i + 2);
        } else if l.trim_end() == "---" && i == 0 {
            starts[0] = 2;
        }
    }
    starts
}

/// A file, or every `.yaml`/`.yml`/`.json` file of a directory (sorted).
fn rbac_files(p: &Path) -> Result<Vec<PathBuf>, ImportError> {
    if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| ierr(p.display().to_string(), e.to_string(), None))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        v.sort();
        return Ok(v);
    }
    Ok(vec![p.to_path_buf()])
}

/// The kubeconfig user (`--kube-user`, else the current context's, else the only one with an
/// exec block) and its kubelogin exec block.
#[allow(clippy::type_complexity)]
fn kubeconfig_user(
    p: &Path,
    user: Option<&str>,
    log: &mut Log,
) -> Result<(String, (String, Vec<String>, Option<String>)), ImportError> {
    let at = p.display().to_string();
    let text = unplaceholder(&read(p, "the kubeconfig")?, log);
    let doc: Value = serde_saphyr::from_str(&text).map_err(|e| {
        ierr(
            at.clone(),
            format!("not YAML: {}", crate::input_file::yaml_error(&e)),
            None,
        )
    })?;
    // Post 1 prints only the user entry (`- name: oauth …`): a list of users is accepted too.
    let users: Vec<Value> = match (&doc["users"], &doc) {
        (Value::Array(u), _) => u.clone(),
        (_, Value::Array(u)) => u.clone(),
        _ => return Err(ierr(at, "no `users:` in this kubeconfig", None)),
    };
    let current = doc["current-context"].as_str().and_then(|c| {
        doc["contexts"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == c)
            .and_then(|x| x["context"]["user"].as_str().map(str::to_string))
    });
    let want = user.map(str::to_string).or(current);
    let names: Vec<String> = users
        .iter()
        .filter_map(|u| u["name"].as_str().map(str::to_string))
        .collect();
    let chosen = match &want {
        Some(w) => users
            .iter()
            .find(|u| u["name"] == w.as_str())
            .ok_or_else(|| {
                ierr(
                    at.clone(),
                    format!("no user `{w}` in this kubeconfig"),
                    Some(format!("users: {}", names.join(", "))),
                )
            })?,
        None => {
            let with_exec: Vec<&Value> = users
                .iter()
                .filter(|u| u["user"]["exec"].is_object())
                .collect();
            match with_exec.as_slice() {
                [one] => *one,
                [] => return Err(ierr(at, "no user with an exec block", None)),
                _ => {
                    return Err(ierr(
                        at,
                        "several users have exec blocks",
                        Some(format!("pick one with --kube-user ({})", names.join(", "))),
                    ));
                }
            }
        }
    };
    let name = chosen["name"].as_str().unwrap_or("").to_string();
    let exec = &chosen["user"]["exec"];
    if !exec.is_object() {
        return Err(ierr(at, format!("user `{name}` has no exec block"), None));
    }
    let block = login::exec_block(exec).map_err(|e| {
        ierr(
            at.clone(),
            format!("user `{name}`: {e}"),
            Some("the lab runs kubelogin (int128/kubelogin) or its built-in client".into()),
        )
    })?;
    Ok((name, block))
}
