//! The `kanidm` CLI lines a person ran, read back into the Kanidm state they built: the exact
//! inverse of the lines `render` prints for a plan (`kanidm::plan`'s `Display`), plus the
//! commands the posts use that the planner never prints (`group add-members`,
//! `set-landing-url` alone, read-only `get`/`list`, `login`, reset tokens). Pure.

use crate::scenario::model::{
    ClaimJoin, ClaimMap, CredentialKind, CredentialTypeMinimum, Group, KanidmState, OAuth2Client,
    Person, ScopeMap,
};
use serde_saphyr::{Location, Spanned};

fn name(v: &str) -> Spanned<String> {
    Spanned {
        value: v.to_string(),
        referenced: Location::UNKNOWN,
        defined: Location::UNKNOWN,
    }
}

/// What one line did to the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Changed the state.
    Applied,
    /// Read-only or outside the lab's model; the reason goes into the header as
    /// `# not imported:`.
    NotImported(String),
}

/// A line the importer cannot map: what is wrong and what would work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError {
    pub message: String,
    pub help: Option<String>,
}

fn err(message: impl Into<String>, help: Option<&str>) -> CmdError {
    CmdError {
        message: message.into(),
        help: help.map(str::to_string),
    }
}

/// The state built so far, and who was a group member before the person existed.
#[derive(Debug, Default)]
pub struct Builder {
    pub state: KanidmState,
    /// What the builder assumed (people who existed before the commands ran).
    pub notes: Vec<String>,
}

fn arg<'a>(w: &'a [String], i: usize, what: &str) -> Result<&'a str, CmdError> {
    w.get(i)
        .map(String::as_str)
        .ok_or_else(|| err(format!("missing {what}"), None))
}

impl Builder {
    fn group(&mut self, g: &str) -> Result<&mut Group, CmdError> {
        self.state
            .groups
            .iter_mut()
            .find(|x| x.name.value == g)
            .ok_or_else(|| {
                err(
                    format!("group `{g}` was not created by an earlier line"),
                    Some("add `kanidm group create <name>` before it"),
                )
            })
    }

    fn person(&mut self, p: &str) -> Result<&mut Person, CmdError> {
        self.state
            .persons
            .iter_mut()
            .find(|x| x.name.value == p)
            .ok_or_else(|| {
                err(
                    format!("person `{p}` was not created by an earlier line"),
                    Some("add `kanidm person create <name> <display name>` before it (or --set the name the post's `$(whoami)` stands for)"),
                )
            })
    }

    fn client(&mut self, c: &str) -> Result<&mut OAuth2Client, CmdError> {
        self.state
            .oauth2_clients
            .iter_mut()
            .find(|x| x.name.value == c)
            .ok_or_else(|| {
                err(
                    format!("OAuth2 client `{c}` was not created by an earlier line"),
                    Some("add `kanidm system oauth2 create-public <name> <display name> <landing url>` before it"),
                )
            })
    }

    fn set_membership(&mut self, g: &str, members: &[String], on: bool) -> Result<(), CmdError> {
        self.group(g)?;
        for m in members {
            // A member no line created existed already (post 1 adds `$(whoami)`, the admin's
            // own person): the lab creates them.
            if on && !self.state.persons.iter().any(|x| x.name.value == *m) {
                if !crate::scenario::load::valid_iname(m) {
                    return Err(err(
                        format!("`{m}` is not a Kanidm person name"),
                        Some(
                            "lowercase letters, digits, `-`, `_`, `.`; give the real name with --set",
                        ),
                    ));
                }
                self.notes.push(format!(
                    "person `{m}` was not created by these commands (it existed in your Kanidm): the lab creates it, display name `{m}`"
                ));
                self.state.persons.push(Person {
                    name: name(m),
                    display_name: m.to_string(),
                    mail: Vec::new(),
                    groups: Vec::new(),
                    credential: CredentialKind::default(),
                });
            }
            let p = self.person(m)?;
            let has = p.groups.iter().any(|x| x.value == g);
            if on && !has {
                p.groups.push(name(g));
            } else if !on {
                p.groups.retain(|x| x.value != g);
            }
        }
        Ok(())
    }

    /// Apply one `kanidm …` line (its words, variables already expanded; `w[0]` is `kanidm`).
    pub fn apply(&mut self, w: &[String]) -> Result<Effect, CmdError> {
        let words: Vec<&str> = w.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["kanidm"] => Err(err("`kanidm` without a subcommand", None)),
            ["kanidm", "login", ..] | ["kanidm", "logout", ..] | ["kanidm", "reauth", ..] => {
                Ok(Effect::NotImported(format!(
                    "`{}`: the lab logs in as idm_admin itself",
                    w.join(" ")
                )))
            }
            ["kanidm", _, "get", ..]
            | ["kanidm", _, "list", ..]
            | ["kanidm", "system", "oauth2", "get", ..]
            | ["kanidm", "system", "oauth2", "list", ..]
            | ["kanidm", "self", ..] => {
                Ok(Effect::NotImported(format!("`{}`: read-only", w.join(" "))))
            }
            ["kanidm", "person", "credential", ..] => Ok(Effect::NotImported(format!(
                "`{}`: the lab generates and enrols each person's credentials itself",
                w.join(" ")
            ))),
            [
                "kanidm",
                "group",
                "account-policy",
                "credential-type-minimum",
                g,
                min,
            ] => {
                if *g != "idm_all_persons" {
                    return Err(err(
                        format!(
                            "an account policy on `{g}`: the lab sets it on idm_all_persons only"
                        ),
                        None,
                    ));
                }
                self.state.credential_type_minimum = Some(match *min {
                    "any" => CredentialTypeMinimum::Any,
                    "mfa" => CredentialTypeMinimum::Mfa,
                    "passkey" => CredentialTypeMinimum::Passkey,
                    other => {
                        return Err(err(
                            format!("credential type `{other}`"),
                            Some("any, mfa or passkey"),
                        ));
                    }
                });
                Ok(Effect::Applied)
            }
            ["kanidm", "group", "create", g, rest @ ..] => {
                if !rest.is_empty() {
                    return Err(err(
                        format!(
                            "`group create {g}` with more arguments ({})",
                            rest.join(" ")
                        ),
                        Some("the lab's groups have a name only (entry managers are not modelled)"),
                    ));
                }
                if self.state.groups.iter().any(|x| x.name.value == *g) {
                    return Err(err(format!("group `{g}` is created twice"), None));
                }
                self.state.groups.push(Group {
                    name: name(g),
                    description: None,
                });
                Ok(Effect::Applied)
            }
            ["kanidm", "group", "delete", g] => {
                self.group(g)?;
                self.state.groups.retain(|x| x.name.value != *g);
                for p in &mut self.state.persons {
                    p.groups.retain(|x| x.value != *g);
                }
                for c in &mut self.state.oauth2_clients {
                    c.scope_maps.retain(|m| m.group.value != *g);
                    c.sup_scope_maps.retain(|m| m.group.value != *g);
                    c.claim_maps.retain(|m| m.group.value != *g);
                }
                Ok(Effect::Applied)
            }
            ["kanidm", "group", "set-members", g, members @ ..] => {
                let g = g.to_string();
                self.group(&g)?;
                for p in &mut self.state.persons {
                    p.groups.retain(|x| x.value != g);
                }
                let m: Vec<String> = members.iter().map(|s| s.to_string()).collect();
                self.set_membership(&g, &m, true)?;
                Ok(Effect::Applied)
            }
            ["kanidm", "group", "purge-members", g] => {
                let g = g.to_string();
                self.group(&g)?;
                for p in &mut self.state.persons {
                    p.groups.retain(|x| x.value != g);
                }
                Ok(Effect::Applied)
            }
            [
                "kanidm",
                "group",
                verb @ ("add-members" | "remove-members"),
                g,
                members @ ..,
            ] => {
                if members.is_empty() {
                    return Err(err(format!("`group {verb} {g}` names nobody"), None));
                }
                let m: Vec<String> = members.iter().map(|s| s.to_string()).collect();
                self.set_membership(g, &m, *verb == "add-members")?;
                Ok(Effect::Applied)
            }
            ["kanidm", "person", "create", p, display] => {
                if self.state.persons.iter().any(|x| x.name.value == *p) {
                    return Err(err(format!("person `{p}` is created twice"), None));
                }
                self.state.persons.push(Person {
                    name: name(p),
                    display_name: display.to_string(),
                    mail: Vec::new(),
                    groups: Vec::new(),
                    credential: CredentialKind::default(),
                });
                Ok(Effect::Applied)
            }
            ["kanidm", "person", "create", ..] => Err(err(
                "`person create` takes a name and a display name",
                Some("kanidm person create alice 'Alice Example'"),
            )),
            ["kanidm", "person", "delete", p] => {
                self.person(p)?;
                self.state.persons.retain(|x| x.name.value != *p);
                Ok(Effect::Applied)
            }
            ["kanidm", "person", "update", p, opts @ ..] => {
                let mut mail = Vec::new();
                let mut display = None;
                let mut i = 0;
                while i < opts.len() {
                    let (flag, inline) = match opts[i].split_once('=') {
                        Some((f, v)) => (f, Some(v)),
                        None => (opts[i], None),
                    };
                    let value = match inline {
                        Some(v) => v.to_string(),
                        None => {
                            i += 1;
                            arg(w, 4 + i, &format!("a value for {flag}"))?.to_string()
                        }
                    };
                    match flag {
                        "--mail" | "-m" => mail.push(value),
                        "--displayname" | "-i" => display = Some(value),
                        "--legalname" | "-l" => {}
                        other => {
                            return Err(err(
                                format!("`person update` has no option `{other}` the lab models"),
                                Some("--mail <address> or --displayname <name>"),
                            ));
                        }
                    }
                    i += 1;
                }
                let person = self.person(p)?;
                if let Some(d) = display {
                    person.display_name = d;
                }
                if !mail.is_empty() {
                    person.mail = mail;
                }
                Ok(Effect::Applied)
            }
            ["kanidm", "person", "purge-attr", p, "mail"] => {
                self.person(p)?.mail.clear();
                Ok(Effect::Applied)
            }
            ["kanidm", "system", "oauth2", rest @ ..] => self.oauth2(rest, w),
            [_, sub, ..] => Err(err(
                format!("`kanidm {sub} …` is a command the lab does not model"),
                Some(
                    "groups, persons (create, update --mail, add-members), account-policy credential-type-minimum and `system oauth2` are imported; anything else can be left out",
                ),
            )),
            [_] | [] => Err(err("not a `kanidm` command", None)),
        }
    }

    fn oauth2(&mut self, rest: &[&str], w: &[String]) -> Result<Effect, CmdError> {
        let applied = Ok(Effect::Applied);
        match rest {
            [kind @ ("create-public" | "create"), c, display, landing] => {
                if self.state.oauth2_clients.iter().any(|x| x.name.value == *c) {
                    return Err(err(format!("OAuth2 client `{c}` is created twice"), None));
                }
                self.state.oauth2_clients.push(OAuth2Client {
                    name: name(c),
                    display_name: display.to_string(),
                    public: *kind == "create-public",
                    landing_url: landing.to_string(),
                    redirect_urls: Vec::new(),
                    localhost_redirects: false,
                    scope_maps: Vec::new(),
                    sup_scope_maps: Vec::new(),
                    legacy_crypto: false,
                    prefer_short_username: false,
                    claim_maps: Vec::new(),
                    image: None,
                });
                applied
            }
            ["create-public" | "create", ..] => Err(err(
                "`oauth2 create-public` takes a name, a display name and a landing URL",
                Some("kanidm system oauth2 create-public k8s Kubernetes https://kubernetes.io/"),
            )),
            ["delete", c] => {
                self.client(c)?;
                self.state.oauth2_clients.retain(|x| x.name.value != *c);
                applied
            }
            ["set-displayname", c, d] => {
                self.client(c)?.display_name = d.to_string();
                applied
            }
            ["set-landing-url", c, u] => {
                self.client(c)?.landing_url = u.to_string();
                applied
            }
            ["add-redirect-url", c, u] => {
                let cl = self.client(c)?;
                if !cl.redirect_urls.iter().any(|x| x == u) {
                    cl.redirect_urls.push(u.to_string());
                }
                applied
            }
            ["remove-redirect-url", c, u] => {
                self.client(c)?.redirect_urls.retain(|x| x != u);
                applied
            }
            ["enable-localhost-redirects", c] => {
                self.client(c)?.localhost_redirects = true;
                applied
            }
            ["disable-localhost-redirects", c] => {
                self.client(c)?.localhost_redirects = false;
                applied
            }
            ["warning-enable-legacy-crypto", c] => {
                self.client(c)?.legacy_crypto = true;
                applied
            }
            ["disable-legacy-crypto", c] => {
                self.client(c)?.legacy_crypto = false;
                applied
            }
            ["prefer-short-username", c] => {
                self.client(c)?.prefer_short_username = true;
                applied
            }
            ["prefer-spn-username", c] => {
                self.client(c)?.prefer_short_username = false;
                applied
            }
            [
                verb @ ("update-scope-map" | "update-sup-scope-map"),
                c,
                g,
                scopes @ ..,
            ] => {
                if scopes.is_empty() {
                    return Err(err(format!("`{verb} {c} {g}` gives no scopes"), None));
                }
                self.group(g)?;
                let m = ScopeMap {
                    group: name(g),
                    scopes: scopes.iter().map(|s| name(s)).collect(),
                };
                let cl = self.client(c)?;
                let maps = if *verb == "update-scope-map" {
                    &mut cl.scope_maps
                } else {
                    &mut cl.sup_scope_maps
                };
                match maps.iter_mut().find(|x| x.group.value == *g) {
                    Some(x) => *x = m,
                    None => maps.push(m),
                }
                applied
            }
            [verb @ ("delete-scope-map" | "delete-sup-scope-map"), c, g] => {
                let cl = self.client(c)?;
                let maps = if *verb == "delete-scope-map" {
                    &mut cl.scope_maps
                } else {
                    &mut cl.sup_scope_maps
                };
                maps.retain(|x| x.group.value != *g);
                applied
            }
            ["update-claim-map", c, claim, g, values @ ..] => {
                self.group(g)?;
                let cl = self.client(c)?;
                let m = ClaimMap {
                    claim: name(claim),
                    group: name(g),
                    values: values.iter().map(|s| s.to_string()).collect(),
                    join: cl
                        .claim_maps
                        .iter()
                        .find(|x| x.claim.value == *claim)
                        .and_then(|x| x.join),
                };
                match cl
                    .claim_maps
                    .iter_mut()
                    .find(|x| x.claim.value == *claim && x.group.value == *g)
                {
                    Some(x) => *x = m,
                    None => cl.claim_maps.push(m),
                }
                applied
            }
            ["update-claim-map-join", c, claim, join] => {
                let j = match *join {
                    "array" => ClaimJoin::Array,
                    "csv" => ClaimJoin::Csv,
                    "ssv" => ClaimJoin::Ssv,
                    other => {
                        return Err(err(
                            format!("claim join `{other}`"),
                            Some("array, csv or ssv"),
                        ));
                    }
                };
                let cl = self.client(c)?;
                let mut any = false;
                for m in cl.claim_maps.iter_mut().filter(|m| m.claim.value == *claim) {
                    m.join = Some(j);
                    any = true;
                }
                if !any {
                    return Err(err(
                        format!("no claim map `{claim}` on `{c}` to join"),
                        None,
                    ));
                }
                applied
            }
            ["delete-claim-map", c, claim, g] => {
                self.client(c)?
                    .claim_maps
                    .retain(|m| !(m.claim.value == *claim && m.group.value == *g));
                applied
            }
            ["set-image", c, file, ..] => {
                self.client(c)?.image = Some(file.to_string());
                applied
            }
            ["remove-image", c] => {
                self.client(c)?.image = None;
                applied
            }
            ["reset-secrets", ..] | ["show-basic-secret", ..] => Ok(Effect::NotImported(format!(
                "`{}`: an event, not state (a scenario step can say `resetSecrets`)",
                w.join(" ")
            ))),
            [sub, ..] => Err(err(
                format!("`kanidm system oauth2 {sub}` is a command the lab does not model"),
                Some(
                    "create-public, set-landing-url, add-redirect-url, enable-localhost-redirects, update-scope-map, warning-enable-legacy-crypto, prefer-short-username, update-claim-map, set-image …",
                ),
            )),
            [] => Err(err("`kanidm system oauth2` without a subcommand", None)),
        }
    }

    /// A `# credentials for <p> (<kind>): …` comment `render` prints: the person's kind.
    pub fn credential_comment(&mut self, line: &str) -> bool {
        let Some(rest) = line.trim().strip_prefix("# credentials for ") else {
            return false;
        };
        let Some((p, after)) = rest.split_once(" (") else {
            return false;
        };
        let kind = match after.split_once(')').map(|(k, _)| k) {
            Some("password + TOTP") => CredentialKind::PasswordTotp,
            Some("password") => CredentialKind::Password,
            Some("passkey") => CredentialKind::Passkey,
            _ => return false,
        };
        match self.person(p) {
            Ok(x) => {
                x.credential = kind;
                true
            }
            Err(_) => false,
        }
    }
}
