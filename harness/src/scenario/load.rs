//! Strict loading: parse, then check every cross-reference, reporting file:line:column.

use super::error::{ScenarioError, ScenarioErrors, did_you_mean, shown};
use super::model::*;
use super::placeholder::{self, Placeholder};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Roles every cluster has (the RBAC bootstrap creates them).
pub const BUILTIN_CLUSTER_ROLES: [&str; 4] = ["view", "edit", "admin", "cluster-admin"];
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
        let ok = v.len() <= 64
            && v.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && v.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !ok {
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
    check_values(&mut c, s);
    c.errors
}

/// Groups and persons: names, duplicates, memberships, the credential policy.
fn check_kanidm(c: &mut Checker<'_>, k: &KanidmState, known: &Known<'_>) {
    let groups = &known.groups;
    for (i, p) in k.persons.iter().enumerate() {
        let f = format!("kanidm.persons[{i}]");
        c.literal(
            &p.display_name,
            p.name.referenced,
            format!("{f}.displayName"),
        );
        for m in &p.mail {
            c.literal(m, p.name.referenced, format!("{f}.mail"));
        }
    }
    duplicates(
        c,
        k.groups
            .iter()
            .enumerate()
            .map(|(i, g)| (&g.name, format!("kanidm.groups[{i}].name"))),
        "group",
    );
    duplicates(
        c,
        k.persons
            .iter()
            .enumerate()
            .map(|(i, p)| (&p.name, format!("kanidm.persons[{i}].name"))),
        "person",
    );
    duplicates(
        c,
        k.oauth2_clients
            .iter()
            .enumerate()
            .map(|(i, o)| (&o.name, format!("kanidm.oauth2Clients[{i}].name"))),
        "OAuth2 client",
    );

    for (i, g) in k.groups.iter().enumerate() {
        c.iname(&g.name, &format!("kanidm.groups[{i}].name"));
        if g.name.value.starts_with("idm_") {
            c.err(
                g.name.referenced,
                format!("kanidm.groups[{i}].name"),
                "names starting with `idm_` are reserved by Kanidm",
            );
        }
    }
    for (i, p) in k.persons.iter().enumerate() {
        let f = format!("kanidm.persons[{i}]");
        c.iname(&p.name, &format!("{f}.name"));
        for (j, g) in p.groups.iter().enumerate() {
            c.reference(
                g,
                &format!("{f}.groups[{j}]"),
                "group",
                groups,
                "kanidm.groups",
            );
        }
        if p.credential == CredentialKind::Password
            && k.credential_type_minimum != Some(CredentialTypeMinimum::Any)
        {
            c.err(p.name.referenced, format!("{f}.credential"), "a password-only person needs the MFA policy relaxed")
                .help = Some("Kanidm requires MFA for persons by default: add `credentialTypeMinimum: any` under `kanidm`, or use `credential: password-totp`".into());
        }
    }
}

/// One OAuth2 client: name, URLs, scope maps, image, claim maps.
fn check_client(c: &mut Checker<'_>, i: usize, o: &OAuth2Client, known: &Known<'_>) {
    let (path, groups) = (c.path, &known.groups);
    let loc = o.name.referenced;
    let base = format!("kanidm.oauth2Clients[{i}]");
    c.literal(&o.display_name, loc, format!("{base}.displayName"));
    c.literal(&o.landing_url, loc, format!("{base}.landingUrl"));
    for u in &o.redirect_urls {
        c.literal(u, loc, format!("{base}.redirectUrls"));
    }
    for v in o.claim_maps.iter().flat_map(|m| &m.values) {
        c.literal(v, loc, format!("{base}.claimMaps"));
    }
    let f = format!("kanidm.oauth2Clients[{i}]");
    c.iname(&o.name, &format!("{f}.name"));
    if !o.public && o.localhost_redirects {
        c.err(
            o.name.referenced,
            format!("{f}.localhostRedirects"),
            "localhost redirects are only allowed for public clients",
        )
        .help = Some("set `public: true` (kubelogin-style clients are public and use PKCE)".into());
    }
    for u in o
        .redirect_urls
        .iter()
        .chain(std::iter::once(&o.landing_url))
    {
        if url::Url::parse(u).is_err() {
            c.err(
                o.name.referenced,
                format!("{f}.redirectUrls"),
                format!("`{u}` is not an absolute URL"),
            );
        }
    }
    check_scope_maps(c, &f, o, groups);
    check_image(c, path, &f, o);
    for (j, m) in o.claim_maps.iter().enumerate() {
        c.reference(
            &m.group,
            &format!("{f}.claimMaps[{j}].group"),
            "group",
            groups,
            "kanidm.groups",
        );
    }
}

/// Scope maps and supplementary scope maps: known groups, scopes Kanidm accepts.
fn check_scope_maps(c: &mut Checker<'_>, f: &str, o: &OAuth2Client, groups: &BTreeSet<&str>) {
    for (kind, maps) in [
        ("scopeMaps", &o.scope_maps),
        ("supScopeMaps", &o.sup_scope_maps),
    ] {
        for (j, m) in maps.iter().enumerate() {
            c.reference(
                &m.group,
                &format!("{f}.{kind}[{j}].group"),
                "group",
                groups,
                "kanidm.groups",
            );
            for (n, sc) in m.scopes.iter().enumerate() {
                if sc.value.is_empty()
                    || !sc
                        .value
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    c.err(
                        sc.referenced,
                        format!("{f}.{kind}[{j}].scopes[{n}]"),
                        format!("invalid scope `{}`", sc.value),
                    )
                    .help = Some("Kanidm scopes match ^[0-9a-zA-Z_]+$".into());
                }
            }
        }
    }
}

/// The client image: a format Kanidm takes, next to the scenario file.
fn check_image(c: &mut Checker<'_>, path: &Path, f: &str, o: &OAuth2Client) {
    if let Some(img) = &o.image
        && Path::new(img)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        c.err(o.name.referenced, format!("{f}.image"), format!("`{}` is not a plain path below the scenario's folder", img.escape_debug()))
            .help = Some("the image is read next to the scenario file: write e.g. `k8s.png` or `images/k8s.png`, no `..` and no absolute path".into());
        return;
    }
    if let Some(img) = &o.image {
        let file = path.parent().unwrap_or(Path::new(".")).join(img);
        let ext_ok = ["png", "jpg", "jpeg", "gif", "svg", "webp"]
            .iter()
            .any(|e| img.to_lowercase().ends_with(&format!(".{e}")));
        if !ext_ok {
            c.err(
                o.name.referenced,
                format!("{f}.image"),
                format!("`{img}` is not png, jpg, gif, svg or webp"),
            );
        } else if !file.is_file() {
            c.err(
                o.name.referenced,
                format!("{f}.image"),
                format!("image `{}` not found", file.display()),
            )
            .help = Some("the path is relative to the scenario file".into());
        }
    }
}

/// API server authentication: exactly one mode, each checked on its own.
fn check_api_server(c: &mut Checker<'_>, api: &Spanned<ApiServerAuth>, known: &Known<'_>) {
    match (&api.value.structured, &api.value.legacy_flags) {
        (Some(_), Some(l)) => {
            c.err(l.referenced, c.api_field.clone(), "`structured` and `legacyFlags` are mutually exclusive")
                .help = Some("kube-apiserver refuses `--authentication-config` together with any `--oidc-*` flag; keep one".into());
        }
        (None, None) => {
            c.err(api.referenced, c.api_field.clone(), "no authentication configured")
                .help = Some("add `structured:` (AuthenticationConfiguration) or `legacyFlags:` (--oidc-* flags)".into());
        }
        (Some(st), None) => {
            if st.value.jwt.is_empty() {
                c.err(
                    st.referenced,
                    format!("{}.structured.jwt", c.api_field),
                    "at least one JWT authenticator is required",
                );
            }
            for (i, j) in st.value.jwt.iter().enumerate() {
                check_jwt(c, i, j, known);
            }
        }
        (None, Some(l)) => check_legacy_flags(c, l, known),
    }
}

/// One structured JWT authenticator.
fn check_jwt(c: &mut Checker<'_>, i: usize, j: &JwtAuthenticator, known: &Known<'_>) {
    let (clients, persons) = (&known.clients, &known.persons);
    let f = format!("{}.structured.jwt[{i}]", c.api_field);
    let loc = j.issuer.client.referenced;
    c.reference(
        &j.issuer.client,
        &format!("{f}.issuer.client"),
        "OAuth2 client",
        clients,
        "kanidm.oauth2Clients",
    );
    if let Some(u) = &j.issuer.url_override {
        c.placeholders(u, loc, &format!("{f}.issuer.urlOverride"), clients, persons);
    }
    check_audiences(c, &f, j);
    mapping(
        c,
        loc,
        &format!("{f}.claimMappings.username"),
        &j.claim_mappings.username,
        true,
    );
    if let Some(g) = &j.claim_mappings.groups {
        mapping(c, loc, &format!("{f}.claimMappings.groups"), g, false);
    }
    let uses_email = j
        .claim_mappings
        .username
        .expression
        .as_deref()
        .is_some_and(|e| e.contains("claims.email"));
    let mentions_verified = j
        .claim_mappings
        .username
        .expression
        .iter()
        .chain(j.claim_mappings.extra.iter().map(|e| &e.value_expression))
        .chain(
            j.claim_validation_rules
                .iter()
                .filter_map(|r| r.expression.as_ref()),
        )
        .any(|e| e.contains("claims.email_verified") || e.contains("claims.?email_verified"));
    if uses_email && !mentions_verified {
        c.err(loc, format!("{f}.claimMappings.username.expression"), "uses claims.email but never checks claims.email_verified")
            .help = Some("the API server rejects this config; add e.g. a claimValidationRule `claims.?email_verified.orValue(true) == true`".into());
    }
    check_claim_rules(c, &f, j);
    check_jwt_placeholders(c, &f, j, known);
}

/// `audiences` and `audienceMatchPolicy` as the API server accepts them.
fn check_audiences(c: &mut Checker<'_>, f: &str, j: &JwtAuthenticator) {
    let loc = j.issuer.client.referenced;
    if let Some(a) = &j.issuer.audiences {
        if a.is_empty() {
            c.err(
                loc,
                format!("{f}.issuer.audiences"),
                "audiences must not be empty",
            );
        }
        match j.issuer.audience_match_policy.as_deref() {
            None | Some("MatchAny") if a.len() <= 1 => {}
            Some("MatchAny") => {}
            None => {
                c.err(
                    loc,
                    format!("{f}.issuer.audienceMatchPolicy"),
                    "several audiences need `audienceMatchPolicy: MatchAny`",
                );
            }
            Some(other) => {
                c.err(
                    loc,
                    format!("{f}.issuer.audienceMatchPolicy"),
                    format!("unknown policy `{other}`; the only value is `MatchAny`"),
                );
            }
        }
    }
}

/// Each claimValidationRule is either `claim`(+`requiredValue`) or `expression`(+`message`).
fn check_claim_rules(c: &mut Checker<'_>, f: &str, j: &JwtAuthenticator) {
    let loc = j.issuer.client.referenced;
    for (n, r) in j.claim_validation_rules.iter().enumerate() {
        let rf = format!("{f}.claimValidationRules[{n}]");
        match (&r.claim, &r.expression) {
            (Some(_), Some(_)) => {
                c.err(loc, rf, "`claim` and `expression` can't both be set");
            }
            (None, None) => {
                c.err(loc, rf, "`claim` or `expression` is required");
            }
            (Some(_), None) if r.message.is_some() => {
                c.err(loc, rf, "`message` may not be set with `claim`");
            }
            (None, Some(_)) if r.required_value.is_some() => {
                c.err(loc, rf, "`requiredValue` may not be set with `expression`");
            }
            _ => {}
        }
    }
}

/// The `--oidc-*` flags.
fn check_legacy_flags(c: &mut Checker<'_>, l: &Spanned<LegacyFlags>, known: &Known<'_>) {
    let clients = &known.clients;
    c.reference(
        &l.value.client,
        &format!("{}.legacyFlags.client", c.api_field),
        "OAuth2 client",
        clients,
        "kanidm.oauth2Clients",
    );
    for (i, a) in l.value.signing_algs.iter().enumerate() {
        if !SIGNING_ALGS.contains(&a.value.as_str()) {
            let e = c.err(
                a.referenced,
                format!("{}.legacyFlags.signingAlgs[{i}]", c.api_field),
                format!("unsupported signing algorithm `{}`", a.value),
            );
            e.help = Some(
                did_you_mean(&a.value, SIGNING_ALGS)
                    .unwrap_or_else(|| format!("one of {}", SIGNING_ALGS.join(", "))),
            );
        }
    }
    for rc in &l.value.required_claims {
        if !rc.contains('=') {
            c.err(
                l.referenced,
                format!("{}.legacyFlags.requiredClaims", c.api_field),
                format!("`{rc}` is not `key=value`"),
            );
        }
    }
    let f = &l.value;
    for v in f
        .username_prefix
        .iter()
        .chain(&f.groups_prefix)
        .chain(&f.client_id)
        .chain(&f.required_claims)
    {
        c.placeholders(
            v,
            l.referenced,
            &format!("{}.legacyFlags", c.api_field),
            &known.clients,
            &known.persons,
        );
    }
}

fn check_rbac(c: &mut Checker<'_>, rbac: &Rbac, known: &Known<'_>) {
    let (clients, persons) = (&known.clients, &known.persons);
    let mut roles: BTreeSet<&str> = BUILTIN_CLUSTER_ROLES.into_iter().collect();
    for r in &rbac.cluster_roles {
        roles.insert(r.name.value.as_str());
    }
    duplicates(
        c,
        rbac.bindings
            .iter()
            .enumerate()
            .map(|(i, b)| (&b.name, format!("rbac.bindings[{i}].name"))),
        "binding",
    );
    for (i, b) in rbac.bindings.iter().enumerate() {
        let f = format!("rbac.bindings[{i}]");
        c.reference(
            &b.cluster_role,
            &format!("{f}.clusterRole"),
            "role",
            &roles,
            "rbac.clusterRoles (or use view, edit, admin, cluster-admin)",
        );
        if b.groups.is_empty() && b.users.is_empty() {
            c.err(
                b.name.referenced,
                f.clone(),
                "a binding needs at least one of `groups` or `users`",
            );
        }
        for subject in b.groups.iter().chain(&b.users) {
            c.placeholders(
                subject,
                b.name.referenced,
                &format!("{f}.subjects"),
                clients,
                persons,
            );
        }
    }
}

fn check_login(c: &mut Checker<'_>, login: &LoginSettings, known: &Known<'_>) {
    let clients = &known.clients;
    for t in login.scopes.iter().chain(&login.redirect_path) {
        c.literal(t, login.client.referenced, "login");
    }
    c.reference(
        &login.client,
        "login.client",
        "OAuth2 client",
        clients,
        "kanidm.oauth2Clients",
    );
    if !login.scopes.iter().any(|sc| sc == "openid") {
        c.err(
            login.client.referenced,
            "login.scopes",
            "`openid` must be requested, or Kanidm issues no id_token",
        );
    }
}

/// Expectations (the scenario's, or a step's under `prefix`): each names a known person
/// and checks something that can be checked.
fn check_expect(
    c: &mut Checker<'_>,
    expect: &[Expectation],
    prefix: &str,
    anchor: Location,
    known: &Known<'_>,
) {
    let (clients, persons) = (&known.clients, &known.persons);
    if expect.is_empty() {
        c.err(
            anchor,
            prefix.to_string(),
            "a scenario must expect something",
        )
        .help = Some(format!(
            "add at least one `- person: <name>` entry under `{prefix}`"
        ));
    }
    for (i, e) in expect.iter().enumerate() {
        let f = format!("{prefix}[{i}]");
        c.reference(
            &e.person,
            &format!("{f}.person"),
            "person",
            persons,
            "kanidm.persons",
        );
        if let Some(w) = &e.whoami {
            for t in w
                .username
                .iter()
                .chain(&w.groups_include)
                .chain(&w.groups_exclude)
            {
                c.placeholders(
                    t,
                    e.person.referenced,
                    &format!("{f}.whoami"),
                    clients,
                    persons,
                );
            }
        }
        let denied = e.login != LoginOutcome::Ok;
        let has_k8s = e.whoami.is_some() || !e.allowed.is_empty() || !e.forbidden.is_empty();
        if denied && (has_k8s || e.unauthorized.is_some()) {
            c.err(e.person.referenced, f.clone(), "a person whose login is denied gets no token, so it cannot have Kubernetes expectations");
        }
        if e.unauthorized.is_some() && has_k8s {
            c.err(
                e.person.referenced,
                f.clone(),
                "`unauthorized` excludes `whoami`, `allowed` and `forbidden`",
            )
            .help = Some(
                "a rejected token is rejected for every request; split into two scenarios".into(),
            );
        }
        if !denied && !has_k8s && e.unauthorized.is_none() {
            c.err(
                e.person.referenced,
                f.clone(),
                "this expectation checks nothing",
            )
            .help = Some(
                "add `whoami`, `allowed`, `forbidden`, `unauthorized`, or `login: access-denied` / `refused`"
                    .into(),
            );
        }
    }
}

/// Steps: names, changes (through the step planner, with the state each step starts
/// from), the API server of a step, expectations against the persons of that step, and
/// where each token comes from.
fn check_steps(c: &mut Checker<'_>, s: &Scenario) {
    let plans = match super::steps::plan(s) {
        Ok(p) => p,
        Err(e) => {
            c.err(e.loc, e.field, e.message);
            return;
        }
    };
    let mut earlier: BTreeSet<&str> = BTreeSet::from([super::steps::INITIAL]);
    for (i, p) in plans.iter().enumerate() {
        let step = p.step;
        let f = format!("steps[{i}]");
        let name = &step.name;
        if !valid_scenario_name(&name.value) || name.value == super::steps::INITIAL {
            c.err(name.referenced, format!("{f}.name"), format!("`{}` cannot name a step", shown(&name.value)))
                .help = Some("letters, digits, `-`, `_` and `.`, starting with a letter or digit; `initial` is taken".into());
        } else if earlier.contains(name.value.as_str()) {
            c.err(
                name.referenced,
                format!("{f}.name"),
                format!("duplicate step `{}`", shown(&name.value)),
            );
        }
        for (j, ch) in step.change.iter().enumerate() {
            check_change(c, ch, &format!("{f}.change[{j}]"));
        }
        let known = Known {
            groups: p
                .state
                .groups
                .iter()
                .map(|g| g.name.value.as_str())
                .collect(),
            persons: p
                .state
                .persons
                .iter()
                .map(|x| x.name.value.as_str())
                .collect(),
            clients: p
                .state
                .oauth2_clients
                .iter()
                .map(|o| o.name.value.as_str())
                .collect(),
        };
        if let Some(api) = &step.api_server {
            c.api_field = format!("{f}.apiServer");
            c.jti_points = Some(earlier.iter().map(|p| p.to_string()).collect());
            check_api_server(c, api, &known);
            check_api_values(c, &api.value);
            c.api_field = "apiServer".into();
            c.jti_points = None;
        }
        check_expect(
            c,
            &step.expect,
            &format!("{f}.expect"),
            name.referenced,
            &known,
        );
        check_token_sources(c, step, &f, p.kanidm_running, &earlier);
        earlier.insert(name.value.as_str());
    }
}
/// Where each of a step's tokens comes from: `tokenFrom` names `initial` or an earlier
/// step (and then `login:` does not apply); without it a fresh login, impossible while
/// Kanidm is stopped.
fn check_token_sources(
    c: &mut Checker<'_>,
    step: &Step,
    f: &str,
    kanidm_running: bool,
    earlier: &BTreeSet<&str>,
) {
    for (j, e) in step.expect.iter().enumerate() {
        let fe = format!("{f}.expect[{j}]");
        match &e.token_from {
            Some(t) => {
                if !earlier.contains(t.value.as_str()) {
                    let hint =
                        did_you_mean(&t.value, earlier.iter().copied()).unwrap_or_else(|| {
                            format!(
                                "tokens are kept from `initial` and earlier steps: {}",
                                list(earlier)
                            )
                        });
                    c.err(
                        t.referenced,
                        format!("{fe}.tokenFrom"),
                        format!("unknown step `{}`", shown(&t.value)),
                    )
                    .help = Some(hint);
                }
                if e.login != LoginOutcome::Ok {
                    c.err(
                        t.referenced,
                        fe.clone(),
                        "`login` is about a fresh login; a kept token was already issued",
                    )
                    .help = Some("drop `login:` here, or drop `tokenFrom` to log in afresh".into());
                }
            }
            None if !kanidm_running => {
                c.err(
                    e.person.referenced,
                    fe.clone(),
                    "Kanidm is stopped in this step, so nobody can log in afresh",
                )
                .help = Some(
                    "add `tokenFrom: initial` (or an earlier step) to check a token issued before"
                        .into(),
                );
            }
            None => {}
        }
    }
}

/// Names a change introduces are checked like the ones in `kanidm:`.
fn check_change(c: &mut Checker<'_>, ch: &Spanned<Change>, f: &str) {
    match &ch.value {
        Change::RenamePerson { to, .. } => c.iname(to, &format!("{f}.renamePerson.to")),
        Change::SetScopeMap { scopes, .. } => {
            if scopes.is_empty() {
                c.err(ch.referenced, format!("{f}.setScopeMap.scopes"), "a scope map needs at least one scope")
                    .help = Some("to take the group's access away, write `- removeScopeMap: {client: …, group: …}`".into());
            }
            for sc in scopes {
                if sc.value.is_empty()
                    || !sc
                        .value
                        .chars()
                        .all(|x| x.is_ascii_alphanumeric() || x == '_')
                {
                    c.err(
                        sc.referenced,
                        format!("{f}.setScopeMap.scopes"),
                        format!("invalid scope `{}`", shown(&sc.value)),
                    )
                    .help = Some("Kanidm scopes match ^[0-9a-zA-Z_]+$".into());
                }
            }
        }
        _ => {}
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): RBAC objects the harness creates.
fn k8s_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(super::action::is_dns_label)
}

/// A mail address Kanidm stores: one `@`, something on both sides, no spaces.
fn plausible_mail(s: &str) -> bool {
    matches!(s.split_once('@'), Some((local, domain))
        if !local.is_empty() && domain.contains('.') && !domain.contains('@')
            && !s.chars().any(char::is_whitespace))
}

/// An absolute http(s) URL (Kanidm accepts nothing else for landing and redirect URLs).
fn web_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
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

/// The values of one API server section (top level or a step's).
fn check_api_values(c: &mut Checker<'_>, api: &ApiServerAuth) {
    if let Some(st) = &api.structured {
        for (i, j) in st.value.jwt.iter().enumerate() {
            let f = format!("{}.structured.jwt[{i}]", c.api_field);
            let loc = j.issuer.client.referenced;
            if let Some(u) = &j.issuer.url_override
                && !(u.starts_with("${") || u.starts_with("https://"))
            {
                c.err(
                    loc,
                    format!("{f}.issuer.urlOverride"),
                    format!("`{}` is not an https URL", u.escape_debug()),
                )
                .help =
                    Some("the API server requires an https issuer, e.g. `${issuer:k8s}/`".into());
            }
            let m = &j.claim_mappings;
            let claims = [
                m.username.claim.as_ref(),
                m.groups.as_ref().and_then(|g| g.claim.as_ref()),
                m.uid.as_ref().and_then(|u| u.claim.as_ref()),
            ];
            for claim in claims.into_iter().flatten() {
                if claim.is_empty() || claim.chars().any(char::is_whitespace) {
                    c.err(
                        loc,
                        format!("{f}.claimMappings"),
                        format!("`{}` is not a claim name", claim.escape_debug()),
                    )
                    .help = Some("a claim name is one word, e.g. `preferred_username`".into());
                }
            }
        }
    }
}

/// A client's URLs (http(s) only) and scope maps (at least one scope).
fn check_client_values(c: &mut Checker<'_>, i: usize, o: &OAuth2Client) {
    let f = format!("kanidm.oauth2Clients[{i}]");
    for (field, u) in std::iter::once(("landingUrl", &o.landing_url))
        .chain(o.redirect_urls.iter().map(|u| ("redirectUrls", u)))
    {
        if url::Url::parse(u).is_ok() && !web_url(u) {
            c.err(o.name.referenced, format!("{f}.{field}"), format!("`{}` is not an http(s) URL", u.escape_debug()))
                .help = Some("Kanidm redirects browsers only to http:// or https:// URLs, e.g. `http://localhost:8000`".into());
        }
    }
    for (kind, maps) in [
        ("scopeMaps", &o.scope_maps),
        ("supScopeMaps", &o.sup_scope_maps),
    ] {
        for (j, m) in maps.iter().enumerate() {
            if m.scopes.is_empty() {
                c.err(
                    m.group.referenced,
                    format!("{f}.{kind}[{j}].scopes"),
                    "a scope map needs at least one scope",
                )
                .help = Some("e.g. `scopes: [openid, groups]`".into());
            }
        }
    }
}

/// RBAC objects the harness creates: Kubernetes names, namespaces, at least one verb.
fn check_rbac_values(c: &mut Checker<'_>, rbac: &Rbac) {
    for (i, r) in rbac.cluster_roles.iter().enumerate() {
        c.k8s_object_name(&r.name, format!("rbac.clusterRoles[{i}].name"));
        for (j, rule) in r.rules.iter().enumerate() {
            if rule.verbs.is_empty() || rule.verbs.iter().any(|v| v.is_empty()) {
                c.err(
                    r.name.referenced,
                    format!("rbac.clusterRoles[{i}].rules[{j}].verbs"),
                    "a rule needs at least one verb",
                )
                .help = Some("e.g. `verbs: [get, list, watch]`".into());
            }
        }
    }
    for (i, b) in rbac.bindings.iter().enumerate() {
        c.k8s_object_name(&b.name, format!("rbac.bindings[{i}].name"));
        if let Some(ns) = &b.namespace
            && !super::action::is_dns_label(ns)
        {
            c.err(
                b.name.referenced,
                format!("rbac.bindings[{i}].namespace"),
                format!("`{}` is not a namespace name", ns.escape_debug()),
            )
            .help = Some(
                "a namespace is a DNS label: lowercase letters, digits and `-`, e.g. `team-a`"
                    .into(),
            );
        }
    }
}

const K8S_NAME_HELP: &str =
    "Kubernetes names are lowercase letters, digits, `-` and `.` (at most 253), e.g. `lab-viewers`";

/// Placeholders in every field the renderer resolves: claim mappings, CEL expressions,
/// rule values and messages, audiences (a `${` there reaches the API server resolved).
fn check_jwt_placeholders(c: &mut Checker<'_>, f: &str, j: &JwtAuthenticator, known: &Known<'_>) {
    let loc = j.issuer.client.referenced;
    let m = &j.claim_mappings;
    let mut texts: Vec<(&str, &String)> = Vec::new();
    for (name, pm) in [
        ("username", Some(&m.username)),
        ("groups", m.groups.as_ref()),
    ] {
        if let Some(pm) = pm {
            texts.extend(
                pm.claim
                    .iter()
                    .chain(&pm.prefix)
                    .chain(&pm.expression)
                    .map(|t| (name, t)),
            );
        }
    }
    if let Some(u) = &m.uid {
        texts.extend(u.claim.iter().chain(&u.expression).map(|t| ("uid", t)));
    }
    texts.extend(
        m.extra
            .iter()
            .flat_map(|e| [("extra", &e.key), ("extra", &e.value_expression)]),
    );
    for r in &j.claim_validation_rules {
        texts.extend(
            r.claim
                .iter()
                .chain(&r.required_value)
                .chain(&r.expression)
                .chain(&r.message)
                .map(|t| ("claimValidationRules", t)),
        );
    }
    for r in &j.user_validation_rules {
        texts.extend(
            std::iter::once(&r.expression)
                .chain(&r.message)
                .map(|t| ("userValidationRules", t)),
        );
    }
    texts.extend(
        j.issuer
            .audiences
            .iter()
            .flatten()
            .map(|t| ("issuer.audiences", t)),
    );
    for (field, t) in texts {
        c.placeholders(
            t,
            loc,
            &format!("{f}.{field}"),
            &known.clients,
            &known.persons,
        );
    }
}

fn mapping(
    c: &mut Checker<'_>,
    loc: Location,
    field: &str,
    m: &PrefixedClaimOrExpression,
    required: bool,
) {
    match (&m.claim, &m.expression) {
        (Some(_), Some(_)) => {
            c.err(loc, field, "`claim` and `expression` can't both be set");
        }
        (None, None) if required => {
            c.err(loc, field, "`claim` or `expression` is required");
        }
        (Some(_), None) if m.prefix.is_none() => {
            c.err(
                loc,
                format!("{field}.prefix"),
                "`prefix` is required when `claim` is set",
            )
            .help = Some(
                "use `prefix: \"\"` for no prefix (the API server has no default here)".into(),
            );
        }
        (None, Some(_)) if m.prefix.is_some() => {
            c.err(
                loc,
                format!("{field}.prefix"),
                "`prefix` may not be set with `expression`",
            );
        }
        _ => {}
    }
}
