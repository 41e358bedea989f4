//! What Kanidm really holds after a change: each client's entry, discovery and JWKS, each
//! group's members — and [`verify`], the pure comparison with what the scenario asked for
//! ("Kanidm has X, scenario wanted Y").

use super::admin::ce;
use super::credentials::PersonSecrets;
use super::server::KanidmEndpoint;
use crate::scenario::model::{KanidmState, OAuth2Client};
use crate::scenario::placeholder::Values;
use anyhow::{Context, Result, anyhow, bail};
use kanidm_client::KanidmClient;
use std::collections::{BTreeMap, BTreeSet};

/// What provisioning created, read back from the server.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub secrets: BTreeMap<String, PersonSecrets>,
    pub uuids: BTreeMap<String, String>,
    pub clients: BTreeMap<String, ClientReadback>,
    /// Each scenario group's members as Kanidm reports them (short names).
    pub members: BTreeMap<String, BTreeSet<String>>,
}

impl Provisioned {
    /// What `${…}` placeholders resolve to against this server.
    pub fn placeholder_values(&self, endpoint: &KanidmEndpoint) -> Values {
        Values::for_lab(
            &endpoint.domain,
            &endpoint.origin,
            self.clients.keys().map(String::as_str),
            self.uuids.clone(),
        )
    }
}

/// A client's state as Kanidm reports it (discovery and JWKS).
#[derive(Debug, Clone)]
pub struct ClientReadback {
    pub issuer: String,
    pub signing_algs: Vec<String>,
    pub jwks_key_types: Vec<String>,
    pub code_challenge_methods: Vec<String>,
    pub scopes_supported: Vec<String>,
    /// The client's entry as Kanidm returns it (attribute → values).
    pub entry: BTreeMap<String, Vec<String>>,
}

impl ClientReadback {
    /// Whether Kanidm stores an image for the client.
    pub fn has_image(&self) -> bool {
        self.entry.contains_key("image")
    }

    pub fn redirect_urls(&self) -> &[String] {
        self.entry
            .get("oauth2_rs_origin")
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn flag(&self, attr: &str) -> bool {
        self.entry
            .get(attr)
            .is_some_and(|v| v.iter().any(|x| x == "true"))
    }

    fn one(&self, attr: &str) -> &str {
        self.entry
            .get(attr)
            .and_then(|v| v.first())
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Scope maps as Kanidm shows them (`group@domain: {"openid", "groups"}`), by short group name.
    fn scope_maps(&self, attr: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for v in self.entry.get(attr).into_iter().flatten() {
            let Some((group, scopes)) = v.split_once(':') else {
                continue;
            };
            let group = group.split('@').next().unwrap_or(group).trim().to_string();
            let scopes = scopes
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .split(',')
                .map(|x| x.trim().trim_matches('"').to_string())
                .filter(|x| !x.is_empty())
                .collect();
            out.insert(group, scopes);
        }
        out
    }
}

/// A group's members as short names (Kanidm answers with SPNs, `alice@localhost`).
pub async fn read_members(kc: &KanidmClient, group: &str) -> Result<BTreeSet<String>> {
    let spns = kc
        .idm_group_get_members(group)
        .await
        .map_err(ce("read a group's members"))?
        .unwrap_or_default();
    Ok(spns
        .iter()
        .map(|m| m.split('@').next().unwrap_or(m).to_string())
        .collect())
}

/// Read a client back: its entry (redirect URLs) plus discovery and JWKS.
pub async fn read_back(
    kc: &KanidmClient,
    http: &reqwest::Client,
    endpoint: &KanidmEndpoint,
    name: &str,
) -> Result<ClientReadback> {
    let entry = kc
        .idm_oauth2_rs_get(name)
        .await
        .map_err(ce("read an OAuth2 client back"))?;
    let entry: BTreeMap<String, Vec<String>> = entry.map(|e| e.attrs).unwrap_or_default();
    let issuer = endpoint.issuer(name);
    let disco: serde_json::Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("fetching discovery for {name}"))?
        .json()
        .await?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let jwks_uri = disco["jwks_uri"]
        .as_str()
        .ok_or_else(|| anyhow!("discovery for {name} has no jwks_uri"))?;
    let jwks: serde_json::Value = http
        .get(jwks_uri)
        .send()
        .await
        .and_then(|r| r.error_for_status())?
        .json()
        .await?;
    let jwks_key_types = jwks["keys"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .map(|k| {
                    format!(
                        "{}/{}",
                        k["kty"].as_str().unwrap_or("?"),
                        k["alg"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ClientReadback {
        issuer: disco["issuer"].as_str().unwrap_or_default().to_string(),
        signing_algs: strings(&disco["id_token_signing_alg_values_supported"]),
        jwks_key_types,
        code_challenge_methods: strings(&disco["code_challenge_methods_supported"]),
        scopes_supported: strings(&disco["scopes_supported"]),
        entry,
    })
}

/// Compare what Kanidm reports with what the scenario asked for: "Kanidm has X, scenario wanted Y".
pub fn verify(want: &KanidmState, p: &Provisioned, endpoint: &KanidmEndpoint) -> Vec<String> {
    let mut problems = Vec::new();
    for c in &want.oauth2_clients {
        match p.clients.get(&c.name.value) {
            Some(rb) => problems.extend(verify_client(c, rb, &endpoint.issuer(&c.name.value))),
            None => problems.push(format!("client {}: not read back", c.name.value)),
        }
    }
    problems.extend(verify_members(want, p));
    problems
}

/// Err when the read-back differs from the wanted state.
pub fn ensure_matches(
    want: &KanidmState,
    p: &Provisioned,
    endpoint: &KanidmEndpoint,
) -> Result<()> {
    let problems = verify(want, p, endpoint);
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "Kanidm state differs from the scenario:\n  {}",
        problems.join("\n  ")
    )
}

/// One client's discovery, JWKS and entry against the scenario.
fn verify_client(c: &OAuth2Client, rb: &ClientReadback, issuer: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let name = &c.name.value;
    let want_alg = if c.legacy_crypto { "RS256" } else { "ES256" };
    if rb.signing_algs != [want_alg] {
        problems.push(format!(
            "client {name}: Kanidm signs with {:?}, scenario wanted [{want_alg}]",
            rb.signing_algs
        ));
    }
    if !rb.jwks_key_types.iter().any(|k| k.ends_with(want_alg)) {
        problems.push(format!(
            "client {name}: JWKS has {:?}, scenario wanted a {want_alg} key",
            rb.jwks_key_types
        ));
    }
    if rb.issuer != issuer {
        problems.push(format!(
            "client {name}: issuer is {}, expected {issuer}",
            rb.issuer
        ));
    }
    if c.public && rb.code_challenge_methods != ["S256"] {
        problems.push(format!(
            "client {name}: PKCE methods {:?}, a public client must require S256",
            rb.code_challenge_methods
        ));
    }
    for m in c.scope_maps.iter().chain(&c.sup_scope_maps) {
        for sc in &m.scopes {
            if !rb.scopes_supported.contains(&sc.value) {
                problems.push(format!(
                    "client {name}: scope {} missing from scopes_supported {:?}",
                    sc.value, rb.scopes_supported
                ));
            }
        }
    }
    if c.image.is_some() != rb.has_image() {
        problems.push(format!(
            "client {name}: Kanidm {} an image, scenario {}",
            if rb.has_image() { "has" } else { "has no" },
            if c.image.is_some() {
                "sets one"
            } else {
                "sets none"
            }
        ));
    }
    problems.extend(verify_entry(c, rb));
    problems
}

/// The client's entry (flags, names, URLs, scope maps) against the scenario.
fn verify_entry(c: &OAuth2Client, rb: &ClientReadback) -> Vec<String> {
    let mut problems = Vec::new();
    let name = &c.name.value;
    for (attr, want) in [
        ("oauth2_allow_localhost_redirect", c.localhost_redirects),
        ("oauth2_jwt_legacy_crypto_enable", c.legacy_crypto),
        ("oauth2_prefer_short_username", c.prefer_short_username),
    ] {
        if rb.flag(attr) != want {
            problems.push(format!(
                "client {name}: Kanidm has {attr} = {}, scenario wanted {want}",
                rb.flag(attr)
            ));
        }
    }
    if rb.one("displayname") != c.display_name {
        problems.push(format!(
            "client {name}: Kanidm has display name {:?}, scenario wanted {:?}",
            rb.one("displayname"),
            c.display_name
        ));
    }
    let same_url = |a: &str, b: &str| {
        a == b || matches!((url::Url::parse(a), url::Url::parse(b)), (Ok(x), Ok(y)) if x == y)
    };
    if !same_url(rb.one("oauth2_rs_origin_landing"), &c.landing_url) {
        problems.push(format!(
            "client {name}: Kanidm has landing URL {:?}, scenario wanted {:?}",
            rb.one("oauth2_rs_origin_landing"),
            c.landing_url
        ));
    }
    for (attr, maps) in [
        ("oauth2_rs_scope_map", &c.scope_maps),
        ("oauth2_rs_sup_scope_map", &c.sup_scope_maps),
    ] {
        let want: BTreeMap<String, BTreeSet<String>> = maps
            .iter()
            .map(|m| {
                (
                    m.group.value.clone(),
                    m.scopes.iter().map(|s| s.value.clone()).collect(),
                )
            })
            .collect();
        let have = rb.scope_maps(attr);
        if have != want {
            problems.push(format!(
                "client {name}: Kanidm has {attr} {have:?}, scenario wanted {want:?}"
            ));
        }
    }
    let norm = |u: &String| {
        url::Url::parse(u)
            .map(|x| x.to_string())
            .unwrap_or_else(|_| u.clone())
    };
    let have_urls: BTreeSet<String> = rb.redirect_urls().iter().map(norm).collect();
    let want_urls: BTreeSet<String> = c.redirect_urls.iter().map(norm).collect();
    if have_urls != want_urls {
        problems.push(format!(
            "client {name}: Kanidm has redirect URLs {have_urls:?}, scenario wanted {want_urls:?}"
        ));
    }
    problems
}

/// Each group's members as Kanidm reports them against the scenario's.
fn verify_members(state: &KanidmState, p: &Provisioned) -> Vec<String> {
    let mut problems = Vec::new();
    for g in &state.groups {
        let name = &g.name.value;
        let want: BTreeSet<String> = state
            .persons
            .iter()
            .filter(|p| p.groups.iter().any(|pg| pg.value == *name))
            .map(|p| p.name.value.clone())
            .collect();
        match p.members.get(name) {
            Some(have) if *have == want => {}
            have => problems.push(format!(
                "group {name}: Kanidm has members {:?}, scenario wanted {want:?}",
                have.cloned().unwrap_or_default()
            )),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scope_maps_and_flags_as_kanidm_shows_them() {
        // As kanidmd 1.10.4 returned them for post 1's client.
        let rb = ClientReadback {
            issuer: String::new(),
            signing_algs: vec![],
            jwks_key_types: vec![],
            code_challenge_methods: vec![],
            scopes_supported: vec![],
            entry: BTreeMap::from([
                (
                    "oauth2_rs_scope_map".to_string(),
                    vec![
                        r#"k8s_users@localhost: {"email", "groups", "openid", "profile"}"#.into(),
                        r#"k8s_admins@localhost: {"openid"}"#.into(),
                    ],
                ),
                (
                    "oauth2_allow_localhost_redirect".to_string(),
                    vec!["true".into()],
                ),
                (
                    "oauth2_jwt_legacy_crypto_enable".to_string(),
                    vec!["false".into()],
                ),
            ]),
        };
        let maps = rb.scope_maps("oauth2_rs_scope_map");
        assert_eq!(
            maps["k8s_users"],
            BTreeSet::from(["email", "groups", "openid", "profile"].map(String::from))
        );
        assert_eq!(maps["k8s_admins"], BTreeSet::from(["openid".to_string()]));
        assert!(rb.scope_maps("oauth2_rs_sup_scope_map").is_empty());
        assert!(rb.flag("oauth2_allow_localhost_redirect"));
        assert!(!rb.flag("oauth2_jwt_legacy_crypto_enable"));
        assert!(!rb.flag("oauth2_prefer_short_username"));
    }
}
