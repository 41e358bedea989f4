//! What an imported scenario starts out expecting: for each person, who the API server will
//! say they are and what their RBAC bindings allow and deny — derived from the imported
//! objects, for the user to edit. Also the stand-ins when an input is missing. Pure.

use crate::scenario::model::{CredentialKind, Group, KanidmState, OAuth2Client, Person, ScopeMap};
use serde_json::{Value, json};

fn name(v: &str) -> serde_saphyr::Spanned<String> {
    serde_saphyr::Spanned {
        value: v.to_string(),
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

/// A Kanidm with the client, every group the bindings name as `<group>@${domain}`, a scope
/// map per group, and one person per group.
pub fn stand_in_kanidm(client: &str, bindings: &[Value]) -> KanidmState {
    let mut groups: Vec<String> = Vec::new();
    for b in bindings {
        for g in b["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some(n) = g.strip_suffix("@${domain}") {
                let n = n.rsplit(':').next().unwrap_or(n);
                let ok = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
                if ok && !groups.iter().any(|x| x == n) {
                    groups.push(n.to_string());
                }
            }
        }
    }
    let scopes = ["openid", "email", "profile", "groups"];
    KanidmState {
        groups: groups
            .iter()
            .map(|g| Group {
                name: name(g),
                description: None,
            })
            .collect(),
        persons: groups
            .iter()
            .map(|g| Person {
                name: name(&format!("{}_member", g.replace('_', "-"))),
                display_name: format!("Member of {g}"),
                mail: Vec::new(),
                groups: vec![name(g)],
                credential: CredentialKind::default(),
            })
            .collect(),
        oauth2_clients: vec![OAuth2Client {
            name: name(client),
            display_name: client.to_string(),
            public: true,
            landing_url: "https://kubernetes.io/".into(),
            redirect_urls: Vec::new(),
            localhost_redirects: true,
            scope_maps: groups
                .iter()
                .map(|g| ScopeMap {
                    group: name(g),
                    scopes: scopes.iter().map(|s| name(s)).collect(),
                })
                .collect(),
            sup_scope_maps: Vec::new(),
            legacy_crypto: false,
            prefer_short_username: false,
            claim_maps: Vec::new(),
            image: None,
        }],
        credential_type_minimum: None,
    }
}

/// The built-in client asking for every scope the client's scope maps grant.
pub fn default_login(state: &KanidmState, client: &str) -> Value {
    let mut scopes = vec!["openid".to_string()];
    for c in state
        .oauth2_clients
        .iter()
        .filter(|c| c.name.value == client)
    {
        for m in &c.scope_maps {
            for s in &m.scopes {
                if !scopes.contains(&s.value) {
                    scopes.push(s.value.clone());
                }
            }
        }
    }
    json!({"client": client, "scopes": scopes})
}

/// Whether the login asks for the `groups` scope (Kanidm puts no groups claim otherwise).
fn asks_for_groups(login: &Value) -> bool {
    let has = |s: &str| s.split([' ', ',']).any(|w| w == "groups");
    if let Some(sc) = login["scopes"].as_array() {
        return sc.iter().filter_map(Value::as_str).any(has);
    }
    let args = login["kubelogin"]["exec"]["args"]
        .as_array()
        .or(login["kubelogin"]["setup"].as_array());
    let args: Vec<&str> = args
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    args.iter().enumerate().any(|(i, a)| {
        a.strip_prefix("--oidc-extra-scope=").is_some_and(has)
            || (*a == "--oidc-extra-scope" && args.get(i + 1).is_some_and(|v| has(v)))
    })
}

/// (username claim, prefix, groups claim, groups prefix) of the API server section.
fn mappings(api: &Value, client: &str) -> (Option<String>, String, Option<String>, String) {
    if let Some(f) = api.get("legacyFlags") {
        let claim = f["usernameClaim"].as_str().unwrap_or("sub").to_string();
        let prefix = match f["usernamePrefix"].as_str() {
            Some("-") => String::new(),
            Some(p) => p.to_string(),
            None if claim == "email" => String::new(),
            None => format!("${{issuer:{client}}}#"),
        };
        return (
            Some(claim),
            prefix,
            f["groupsClaim"].as_str().map(str::to_string),
            f["groupsPrefix"].as_str().unwrap_or("").to_string(),
        );
    }
    let cm = &api["structured"]["jwt"][0]["claimMappings"];
    (
        cm["username"]["claim"].as_str().map(str::to_string),
        cm["username"]["prefix"].as_str().unwrap_or("").to_string(),
        cm["groups"]["claim"].as_str().map(str::to_string),
        cm["groups"]["prefix"].as_str().unwrap_or("").to_string(),
    )
}

/// How strong a role is (for picking what to check).
fn strength(role: &str) -> u8 {
    match role {
        "cluster-admin" => 4,
        "admin" => 3,
        "edit" => 2,
        "view" => 1,
        _ => 0,
    }
}

/// One expectation per person.
pub fn skeleton(
    state: &KanidmState,
    api: &Value,
    login: &Value,
    bindings: &[Value],
    client: &str,
) -> Value {
    let (uclaim, uprefix, gclaim, gprefix) = mappings(api, client);
    let groups_on = gclaim.as_deref() == Some("groups") && asks_for_groups(login);
    let short = state
        .oauth2_clients
        .iter()
        .any(|c| c.name.value == client && c.prefer_short_username);
    let mut out = Vec::new();
    for p in &state.persons {
        let n = &p.name.value;
        let username = match uclaim.as_deref() {
            Some("preferred_username") if short => Some(format!("{uprefix}{n}")),
            Some("preferred_username") => Some(format!("{uprefix}{n}@${{domain}}")),
            Some("email") => p.mail.first().map(|m| format!("{uprefix}{m}")),
            Some("sub") => Some(format!("{uprefix}${{uuid:{n}}}")),
            _ => None,
        };
        let my_groups: Vec<String> = p
            .groups
            .iter()
            .map(|g| format!("{gprefix}{}@${{domain}}", g.value))
            .collect();
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        let mut roles: Vec<(String, Option<String>)> = Vec::new();
        for b in bindings {
            let role = b["clusterRole"].as_str().unwrap_or("").to_string();
            let ns = b["namespace"].as_str().map(str::to_string);
            let mut mine = false;
            for g in b["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if groups_on && my_groups.iter().any(|x| x == g) {
                    mine = true;
                    if !include.iter().any(|x| x == g) {
                        include.push(g.to_string());
                    }
                } else if groups_on && !exclude.iter().any(|x| x == g) {
                    exclude.push(g.to_string());
                }
            }
            if let Some(u) = &username
                && b["users"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x.as_str() == Some(u))
            {
                mine = true;
            }
            if mine {
                roles.push((role, ns));
            }
        }
        exclude.retain(|g| !include.contains(g));
        let mut e = json!({"person": n});
        let mut who = json!({});
        if let Some(u) = &username {
            who["username"] = json!(u);
        }
        if !include.is_empty() {
            who["groupsInclude"] = json!(include);
        }
        if !exclude.is_empty() {
            who["groupsExclude"] = json!(exclude);
        }
        if who.as_object().is_some_and(|o| !o.is_empty()) {
            e["whoami"] = who;
        }
        let cluster_wide = roles
            .iter()
            .filter(|(_, ns)| ns.is_none())
            .max_by_key(|(r, _)| strength(r));
        let (allowed, forbidden): (Vec<String>, Vec<String>) = match cluster_wide {
            Some((r, _)) if r == "cluster-admin" => (
                vec![
                    "list secrets -n kube-system".into(),
                    "delete namespace scratch".into(),
                ],
                vec![],
            ),
            Some((r, _)) if r == "admin" || r == "edit" => (
                vec!["list pods -A".into(), "create configmaps -n default".into()],
                vec!["delete namespace scratch".into()],
            ),
            Some((r, _)) if r == "view" => (
                vec!["list pods -A".into()],
                vec![
                    "delete namespace scratch".into(),
                    "list secrets -n kube-system".into(),
                ],
            ),
            Some(_) => (vec![], vec!["delete namespace scratch".into()]),
            None => match roles.iter().find_map(|(r, ns)| ns.as_ref().map(|n| (r, n))) {
                Some((r, ns)) if strength(r) > 0 => (
                    vec![format!("list pods -n {ns}")],
                    vec!["list pods -A".into()],
                ),
                _ => (vec![], vec!["list pods -A".into()]),
            },
        };
        if !allowed.is_empty() {
            e["allowed"] = json!(allowed);
        }
        if !forbidden.is_empty() {
            e["forbidden"] = json!(forbidden);
        }
        out.push(e);
    }
    json!(out)
}
