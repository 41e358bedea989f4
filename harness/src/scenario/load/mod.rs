//! Strict loading: parse, then check every cross-reference, reporting file:line:column.

use super::error::{ScenarioError, ScenarioErrors, did_you_mean, shown};
use super::model::*;
use super::placeholder::{self, Placeholder};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod api_server;
mod expect;
mod kanidm;
mod rbac;

use api_server::*;
use expect::*;
use kanidm::*;
use rbac::*;

/// Roles every cluster has (the RBAC bootstrap creates them).
pub const BUILTIN_CLUSTER_ROLES: [&str; 4] = ["view", "edit", "admin", "cluster-admin"];
/// Entries every Kanidm has (accounts and groups), whose names a scenario may not take.
pub const KANIDM_BUILTIN_NAMES: [&str; 8] = [
    "admin",
    "idm_admin",
    "anonymous",
    "system_admins",
    "domain_admins",
    "system",
    "builtin_administrators",
    "idm_admins",
];
pub const SIGNING_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
];

/// A scenario that parsed and passed every check.
#[derive(Debug, Clone)]
pub struct LoadedScenario {
    pub path: PathBuf,
    pub name: String,
    pub scenario: Scenario,
    /// The header comment (lines starting with `#` before the first key).
    pub header: String,
}

impl LoadedScenario {
    pub fn client(&self, name: &str) -> Option<&OAuth2Client> {
        self.scenario
            .kanidm
            .oauth2_clients
            .iter()
            .find(|c| c.name.value == name)
    }
    pub fn person(&self, name: &str) -> Option<&Person> {
        self.scenario
            .kanidm
            .persons
            .iter()
            .find(|p| p.name.value == name)
    }
}

/// Scenario files are small (the largest shipped one is ~3 KB); anything over this is not one.
pub const MAX_SCENARIO_BYTES: u64 = 256 * 1024;

pub fn load_file(path: &Path) -> Result<LoadedScenario, ScenarioErrors> {
    let fail = |message: String, help: &str| {
        ScenarioErrors(vec![ScenarioError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message,
            help: Some(help.into()),
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(
            format!("cannot read scenario file: {e}"),
            "check the path; `cargo xtask scenarios list` shows the shipped scenarios",
        )
    })?;
    if !meta.is_file() {
        return Err(fail(
            "not a regular file".into(),
            "give the path of a scenario `.yaml` file",
        ));
    }
    if meta.len() > MAX_SCENARIO_BYTES {
        return Err(fail(
            format!(
                "the file has {} bytes; a scenario file has at most {MAX_SCENARIO_BYTES}",
                meta.len()
            ),
            "a scenario describes one situation; split it into several files",
        ));
    }
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SCENARIO_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            fail(
                format!("cannot read scenario file: {e}"),
                "check the file's permissions",
            )
        })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let column = good.len() - good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) + 1;
        let bad = e.as_bytes().get(good.len()).copied().unwrap_or(0);
        ScenarioErrors(vec![ScenarioError {
            file: path.to_path_buf(),
            line: line as u64,
            column: column as u64,
            field: String::new(),
            message: format!("the file is not UTF-8 text (byte 0x{bad:02x})"),
            help: Some("save the scenario as UTF-8".into()),
        }])
    })?;
    load_str(path, &text)
}

pub fn load_str(path: &Path, text: &str) -> Result<LoadedScenario, ScenarioErrors> {
    if text
        .trim()
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ScenarioErrors(vec![ScenarioError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            field: String::new(),
            message: "the file is empty".into(),
            help: Some("a scenario needs `description`, `kanidm`, `apiServer`, `login` and `expect`; see scenarios/README.md".into()),
        }]));
    }
    if let Some(e) = control_character(path, text) {
        return Err(ScenarioErrors(vec![e]));
    }
    let mut options = serde_saphyr::Options::default();
    // `public: yes` is YAML 1.1; a scenario says `true` or `false`.
    options.strict_booleans = true;
    // A tag the schema does not know (`!secret x`) would be dropped silently.
    options.reject_unsupported_tags = true;
    options.reject_tagged_field_names = true;
    // `<<: *defaults` would let one mapping silently override another.
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Error;
    let scenario: Scenario = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ScenarioErrors(vec![syntax_error(path, text, &e)]))?;
    let mut errors = control_in_values(path, &scenario);
    errors.extend(check(path, &scenario));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match &scenario.name {
        Some(n) if !valid_scenario_name(&n.value) => {
            let shown: String = n.value.chars().take(80).collect();
            errors.push(ScenarioError {
                help: Some(NAME_HELP.into()),
                ..ScenarioError::at(
                    path,
                    n.referenced,
                    "name",
                    format!(
                        "scenario name `{}` is not a plain name",
                        shown.escape_debug()
                    ),
                )
            });
        }
        None if !valid_scenario_name(&stem) => errors.push(ScenarioError {
            help: Some(format!("{NAME_HELP}, or rename the file")),
            ..ScenarioError::at(
                path,
                Location::UNKNOWN,
                "name",
                format!(
                    "the file name `{}` cannot name the scenario",
                    stem.escape_debug()
                ),
            )
        }),
        _ => {}
    }
    if !errors.is_empty() {
        return Err(ScenarioErrors(errors));
    }
    let header = text
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(LoadedScenario {
        path: path.to_path_buf(),
        name: scenario
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or(stem),
        scenario,
        header,
    })
}

const NAME_HELP: &str = "add `name:` with letters, digits, `-` and `_` only (at most 64, starting with a letter or digit), e.g. `name: my-bug`";

/// A scenario name becomes a directory and file names of a run (artifacts, the lab's
/// kubeconfigs): one plain path component, nothing a terminal or a shell treats specially.
pub fn valid_scenario_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A control character written into the file (a NUL, a terminal escape): located.
fn control_character(path: &Path, text: &str) -> Option<ScenarioError> {
    for (i, line) in text.lines().enumerate() {
        if let Some((col, c)) = line
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && *c != '\t' && *c != '\r')
        {
            return Some(ScenarioError {
                file: path.to_path_buf(),
                line: i as u64 + 1,
                column: col as u64 + 1,
                field: String::new(),
                message: format!("control character {c:?} in the file"),
                help: Some("scenario files are plain text; remove it".into()),
            });
        }
    }
    None
}

/// Control characters that reached a value through a YAML escape (`"\u001b[31m"`, `"\0"`):
/// they would be written to terminals, logs and Kanidm.
fn control_in_values(path: &Path, s: &Scenario) -> Vec<ScenarioError> {
    let mut out = Vec::new();
    let mut bad = |text: &str, loc: Location, field: &str| {
        if text.chars().any(char::is_control) {
            out.push(ScenarioError {
                help: Some(
                    "write printable text only; control characters are not allowed in values"
                        .into(),
                ),
                ..ScenarioError::at(
                    path,
                    loc,
                    field,
                    "control character in a value (from a YAML escape)",
                )
            });
        }
    };
    bad(&s.description, Location::UNKNOWN, "description");
    let k = &s.kanidm;
    for g in &k.groups {
        bad(&g.name.value, g.name.referenced, "kanidm.groups.name");
    }
    for p in &k.persons {
        let loc = p.name.referenced;
        for t in std::iter::once(&p.name.value)
            .chain([&p.display_name])
            .chain(&p.mail)
        {
            bad(t, loc, "kanidm.persons");
        }
    }
    for o in &k.oauth2_clients {
        let loc = o.name.referenced;
        let texts = [&o.name.value, &o.display_name, &o.landing_url]
            .into_iter()
            .chain(&o.redirect_urls)
            .chain(o.claim_maps.iter().flat_map(|m| &m.values))
            .chain(&o.image);
        for t in texts {
            bad(t, loc, "kanidm.oauth2Clients");
        }
    }
    let mut apis = vec![&s.api_server.value];
    apis.extend(
        s.steps
            .iter()
            .filter_map(|st| st.api_server.as_ref().map(|a| &a.value)),
    );
    for api in apis {
        if let Some(st) = &api.structured {
            for j in &st.value.jwt {
                // Every string of the authenticator, as the API server will get it.
                let m = &j.claim_mappings;
                let all = serde_json::to_value((
                    (&m.username, &m.groups, &m.uid, &m.extra),
                    (&j.claim_validation_rules, &j.user_validation_rules),
                    (&j.issuer.audiences, &j.issuer.url_override),
                ))
                .unwrap_or_default();
                for t in strings_in(&all) {
                    bad(t, j.issuer.client.referenced, "apiServer.structured.jwt");
                }
            }
        }
    }
    for st in &s.steps {
        if let Some(t) = &st.description {
            bad(t, st.name.referenced, "steps.description");
        }
    }
    for e in s
        .expect
        .iter()
        .chain(s.steps.iter().flat_map(|st| &st.expect))
    {
        if let Some(w) = &e.whoami {
            for t in w
                .username
                .iter()
                .chain(&w.groups_include)
                .chain(&w.groups_exclude)
            {
                bad(t, e.person.referenced, "expect.whoami");
            }
        }
    }
    for t in s.login.scopes.iter().chain(&s.login.redirect_path) {
        bad(t, s.login.client.referenced, "login");
    }
    out
}

fn strings_in(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().flat_map(strings_in).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(strings_in).collect(),
        _ => Vec::new(),
    }
}

/// The key written at `line:column` (1-based), for messages about its value.
fn key_at(text: &str, line: usize, column: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let before: String = l.chars().take(column.saturating_sub(1)).collect();
    let key = before
        .trim()
        .trim_start_matches("- ")
        .trim_end_matches(':')
        .trim();
    (!key.is_empty() && !key.contains(' ')).then(|| key.to_string())
}

fn syntax_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> ScenarioError {
    let loc = e.location().unwrap_or(Location::UNKNOWN);
    // The library's message without its source snippet; we print our own position.
    let rendered = crate::input_file::redact_values(&e.without_snippet().to_string());
    let message = rendered
        .strip_prefix("error: ")
        .unwrap_or(&rendered)
        .split_once(": ")
        .filter(|(pos, _)| pos.starts_with("line "))
        .map(|(_, msg)| msg.to_string())
        .unwrap_or_else(|| rendered.clone());
    // Our prefix already carries the position.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    let key = key_at(text, loc.line() as usize, loc.column() as usize);
    let named = |what: &str| match &key {
        Some(k) => format!("`{k}` must be {what}"),
        None => format!("expected {what} here"),
    };
    let (message, help) = if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let k = rest.split(',').next().unwrap_or(rest).trim();
        (
            format!("duplicate key `{k}`: a key may appear only once in a mapping"),
            Some("remove one of them, or merge their values".to_string()),
        )
    } else if message.contains("expected mapping start") {
        (
            named("a mapping (`key: value` lines indented below it)"),
            Some("see scenarios/README.md for what goes under it".to_string()),
        )
    } else if message.contains("cannot deserialize null") {
        (
            named("a value (it is empty here)"),
            Some(
                "write the value after the colon, or remove the line if the field is optional"
                    .to_string(),
            ),
        )
    } else if message.contains("expected string scalar") {
        (
            named("text (one value)"),
            Some("quote it if it contains `:` or starts with `[`, `{` or `-`".to_string()),
        )
    } else if message.contains("invalid u16") {
        (
            named("a port number from 1 to 65535"),
            Some("e.g. `redirectPort: 8000`".to_string()),
        )
    } else if message.contains("merge key") || message.contains("<<") {
        (
            "merge keys (`<<`) are not allowed in scenario files".to_string(),
            Some(
                "write each mapping out in full, so what a scenario sets is what you read"
                    .to_string(),
            ),
        )
    } else if message.contains("expected sequence start") {
        (
            named("a list (`- item` lines)"),
            Some("write each item on its own line starting with `- `".to_string()),
        )
    } else {
        (message, None)
    };
    let help = if help.is_some() {
        help
    } else if message.contains("unknown field") {
        Some("field names are camelCase; see scenarios/README.md for the schema".to_string())
    } else if message.contains("invalid boolean") {
        Some("write `true` or `false`".to_string())
    } else if message.contains("missing field") {
        Some("add the field; see scenarios/README.md for the schema".to_string())
    } else {
        None
    };
    ScenarioError {
        file: path.to_path_buf(),
        line: loc.line(),
        column: loc.column(),
        field: String::new(),
        message: message.trim().to_string(),
        help,
    }
}

/// A Kanidm name: `^[a-z][a-z0-9-_.]{0,63}$`.
pub fn valid_iname(v: &str) -> bool {
    v.len() <= 64
        && v.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

struct Checker<'a> {
    path: &'a Path,
    errors: Vec<ScenarioError>,
    /// Where the API server section being checked is: `apiServer` or `steps[i].apiServer`.
    api_field: String,
    /// In a step's API server: the points whose tokens `${jti:…}` may name.
    jti_points: Option<BTreeSet<String>>,
}

impl Checker<'_> {
    fn err(
        &mut self,
        loc: Location,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> &mut ScenarioError {
        self.errors
            .push(ScenarioError::at(self.path, loc, field, msg));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }

    fn reference(
        &mut self,
        name: &Spanned<String>,
        field: &str,
        what: &str,
        known: &BTreeSet<&str>,
        section: &str,
    ) {
        if known.contains(name.value.as_str()) {
            return;
        }
        let hint = did_you_mean(&name.value, known.iter().copied())
            .unwrap_or_else(|| format!("declare it under `{section}` (known: {})", list(known)));
        self.err(
            name.referenced,
            field,
            format!("unknown {what} `{}`", shown(&name.value)),
        )
        .help = Some(hint);
    }

    fn iname(&mut self, name: &Spanned<String>, field: &str) {
        let v = &name.value;
        if !valid_iname(v) {
            self.err(
                name.referenced,
                field,
                format!("`{}` is not a valid Kanidm name", shown(v)),
            )
            .help = Some("Kanidm names match ^[a-z][a-z0-9-_.]{0,63}$".into());
        }
    }

    fn placeholders(
        &mut self,
        text: &str,
        loc: Location,
        field: &str,
        clients: &BTreeSet<&str>,
        persons: &BTreeSet<&str>,
    ) {
        match placeholder::scan(text) {
            Err(msg) => {
                self.err(loc, field, msg);
            }
            Ok(found) => {
                for p in found {
                    match p {
                        Placeholder::Issuer(c) if !clients.contains(c.as_str()) => {
                            let e = self.err(
                                loc,
                                field,
                                format!("placeholder refers to unknown client `{c}`"),
                            );
                            e.help = did_you_mean(&c, clients.iter().copied());
                        }
                        Placeholder::Jti(point, _) if self.jti_points.is_none() => {
                            self.err(
                                loc,
                                field,
                                format!("`${{jti:{point}:…}}` works only in a step's apiServer"),
                            )
                            .help = Some(
                                "it names a token kept from `initial` or an earlier step".into(),
                            );
                        }
                        Placeholder::Jti(point, _)
                            if !self
                                .jti_points
                                .as_ref()
                                .is_some_and(|ps| ps.contains(&point)) =>
                        {
                            self.err(
                                loc,
                                field,
                                format!("`${{jti:{point}:…}}` names no earlier point"),
                            )
                            .help = Some(format!(
                                "earlier points: {}",
                                self.jti_points
                                    .iter()
                                    .flatten()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                        Placeholder::Uuid(p) if !persons.contains(p.as_str()) => {
                            let e = self.err(
                                loc,
                                field,
                                format!("placeholder refers to unknown person `{p}`"),
                            );
                            e.help = did_you_mean(&p, persons.iter().copied());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Checker<'_> {
    /// A name the harness gives a Kubernetes object (RFC 1123 subdomain).
    fn k8s_object_name(&mut self, name: &Spanned<String>, field: String) {
        if !k8s_name(&name.value) {
            self.err(
                name.referenced,
                field,
                format!("`{}` is not a Kubernetes name", shown(&name.value)),
            )
            .help = Some(K8S_NAME_HELP.into());
        }
    }

    /// A field whose value is used as written: a `${` there would reach Kanidm or the
    /// browser literally, so it is an error.
    fn literal(&mut self, text: &str, loc: Location, field: impl Into<String>) {
        if text.contains("${") {
            self.err(loc, field, "placeholders are not resolved in this field")
                .help = Some("`${…}` works in apiServer (claim mappings, rules, urlOverride, legacy flag values), rbac subjects and whoami; write the value here literally".into());
        }
    }
}

fn list(known: &BTreeSet<&str>) -> String {
    if known.is_empty() {
        return "none".into();
    }
    let mut names: Vec<String> = known.iter().take(20).map(|k| shown(k)).collect();
    if known.len() > 20 {
        names.push(format!("and {} more", known.len() - 20));
    }
    names.join(", ")
}

fn duplicates<'a>(
    c: &mut Checker<'_>,
    names: impl Iterator<Item = (&'a Spanned<String>, String)>,
    what: &str,
) {
    let mut seen = BTreeSet::new();
    for (n, field) in names {
        if !seen.insert(n.value.clone()) {
            c.err(
                n.referenced,
                field,
                format!("duplicate {what} `{}`", shown(&n.value)),
            );
        }
    }
}

/// The names a scenario declares, for cross-references.
struct Known<'a> {
    groups: BTreeSet<&'a str>,
    persons: BTreeSet<&'a str>,
    clients: BTreeSet<&'a str>,
}

fn check(path: &Path, s: &Scenario) -> Vec<ScenarioError> {
    let mut c = Checker {
        path,
        errors: Vec::new(),
        api_field: "apiServer".into(),
        jti_points: None,
    };
    let k = &s.kanidm;
    let known = Known {
        groups: k.groups.iter().map(|g| g.name.value.as_str()).collect(),
        persons: k.persons.iter().map(|p| p.name.value.as_str()).collect(),
        clients: k
            .oauth2_clients
            .iter()
            .map(|o| o.name.value.as_str())
            .collect(),
    };
    check_kanidm(&mut c, k, &known);
    for (i, o) in k.oauth2_clients.iter().enumerate() {
        check_client(&mut c, i, o, &known);
    }
    check_api_server(&mut c, &s.api_server, &known);
    check_rbac(&mut c, &s.rbac, &known);
    check_login(&mut c, &s.login, &known);
    check_expect(&mut c, &s.expect, "expect", s.api_server.referenced, &known);
    for e in &s.expect {
        if let Some(t) = &e.token_from {
            c.err(t.referenced, "expect.tokenFrom", "`tokenFrom` belongs in a step's expectations")
                .help = Some("the scenario's own expectations always use the first login; add `steps:` to look at a token again later".into());
        }
    }
    check_steps(&mut c, s);
    check_refreshes(&mut c, s);
    check_values(&mut c, s);
    c.errors
}

/// Values checked against what Kanidm and Kubernetes accept, one rule per field.
fn check_values(c: &mut Checker<'_>, s: &Scenario) {
    for (i, p) in s.kanidm.persons.iter().enumerate() {
        for m in &p.mail {
            if !plausible_mail(m) {
                c.err(
                    p.name.referenced,
                    format!("kanidm.persons[{i}].mail"),
                    format!("`{}` is not a mail address", m.escape_debug()),
                )
                .help = Some("write it like `alice@example.com`".into());
            }
        }
    }
    for (i, o) in s.kanidm.oauth2_clients.iter().enumerate() {
        check_client_values(c, i, o);
    }
    check_api_values(c, &s.api_server.value);
    check_rbac_values(c, &s.rbac);
    let login = &s.login;
    for sc in &login.scopes {
        if sc.is_empty() || !sc.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            c.err(
                login.client.referenced,
                "login.scopes",
                format!("invalid scope `{}`", sc.escape_debug()),
            )
            .help = Some("one scope per list item; Kanidm scopes match ^[0-9a-zA-Z_]+$".into());
        }
    }
    if let Some(p) = &login.redirect_path
        && (!p.starts_with('/') || p.contains(['?', '#']) || p.chars().any(char::is_whitespace))
    {
        c.err(
            login.client.referenced,
            "login.redirectPath",
            format!("`{}` is not a URL path", p.escape_debug()),
        )
        .help = Some("write it like `/callback`".into());
    }
}
