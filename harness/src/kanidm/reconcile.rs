//! Bring a running Kanidm from one scenario's state to the next, in place.
//!
//! A run keeps one Kanidm and changes only what differs between consecutive scenarios, so
//! people keep their Kanidm login session (single sign-on) and a later scenario's logins
//! skip the password/TOTP pages — exactly what a kubelogin user sees the second time.
//! From the empty state this is the whole provisioning ([`super::provision::apply`]).
//!
//! What cannot change in place (the `idm_all_persons` credential policy) makes the run start
//! a fresh Kanidm instead: see [`in_place_blocker`].

use super::provision::{self, PersonSecrets, Provisioned, ce};
use super::server::KanidmEndpoint;
use crate::scenario::LoadedScenario;
use crate::scenario::model::{
    ClaimJoin, ClaimMap, CredentialKind, KanidmState, OAuth2Client, Person, ScopeMap,
};
use anyhow::{Context, Result, anyhow, bail};
use kanidm_client::KanidmClient;
use std::collections::{BTreeMap, BTreeSet};

/// The state a server is in, as far as this module changed it.
pub struct Previous<'a> {
    pub state: &'a KanidmState,
    pub provisioned: &'a Provisioned,
}

/// What a reconciliation did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Secrets and UUIDs of every person on the server, read-back of the scenario's clients.
    pub provisioned: Provisioned,
    /// What the server holds now: the scenario's state plus persons it does not mention,
    /// kept with no group memberships (their sign-in survives for later scenarios).
    pub server_state: KanidmState,
    /// Persons recreated because their credential kind changed: their Kanidm sessions
    /// (and browser profiles) are void.
    pub replaced_persons: Vec<String>,
    /// A person or client was deleted: tokens issued before may name entries (UUIDs,
    /// signing keys) that no longer exist.
    pub deleted_entries: bool,
    /// How many write calls were made (0 = the state was already right).
    pub changes: usize,
}

/// Why the server cannot be brought to `next` in place, if it cannot.
pub fn in_place_blocker(prev: &KanidmState, next: &KanidmState) -> Option<String> {
    if prev.credential_type_minimum != next.credential_type_minimum {
        return Some(format!(
            "the idm_all_persons credential policy changes ({:?} -> {:?})",
            prev.credential_type_minimum.map(|m| m.as_kanidm()),
            next.credential_type_minimum.map(|m| m.as_kanidm())
        ));
    }
    None
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> BTreeSet<String> {
    items.iter().map(|i| name(i).to_string()).collect()
}

fn members_of(state: &KanidmState, group: &str) -> Vec<String> {
    let mut m: Vec<String> = state
        .persons
        .iter()
        .filter(|p| p.groups.iter().any(|g| g.value == group))
        .map(|p| p.name.value.clone())
        .collect();
    m.sort();
    m
}

fn scope_set(m: &ScopeMap) -> BTreeSet<&str> {
    m.scopes.iter().map(|s| s.value.as_str()).collect()
}

fn claim_key(m: &ClaimMap) -> (String, String, Vec<String>, Option<ClaimJoin>) {
    (
        m.claim.value.clone(),
        m.group.value.clone(),
        m.values.clone(),
        m.join,
    )
}

/// A person can be kept (with their credentials and sessions) when their credential kind
/// is unchanged.
fn keepable(prev: &Person, next: &Person) -> bool {
    prev.credential == next.credential
}

/// Reconcile the server from `prev` (None: a fresh server) to the scenario's state.
pub async fn reconcile(
    kc: &KanidmClient,
    prev: Option<Previous<'_>>,
    s: &LoadedScenario,
    http: &reqwest::Client,
    endpoint: &KanidmEndpoint,
) -> Result<Applied> {
    let empty_state = KanidmState::default();
    let empty_out = Provisioned::default();
    let (ps, pp) = match &prev {
        Some(p) => (p.state, p.provisioned),
        None => (&empty_state, &empty_out),
    };
    let next = &s.scenario.kanidm;
    if let Some(why) = in_place_blocker(ps, next) {
        if prev.is_some() {
            bail!("cannot change Kanidm in place: {why}");
        }
        if let Some(min) = next.credential_type_minimum {
            kc.group_account_policy_credential_type_minimum_set("idm_all_persons", min.as_kanidm())
                .await
                .map_err(ce("change the idm_all_persons account policy"))?;
        }
    }
    let mut out = Applied::default();

    // Entries that go away: clients, then persons, then groups (Kanidm drops references
    // to deleted entries, such as scope maps and memberships, by itself).
    let next_clients = names(&next.oauth2_clients, |c| &c.name.value);
    for c in &ps.oauth2_clients {
        if !next_clients.contains(&c.name.value) {
            kc.idm_oauth2_rs_delete(&c.name.value)
                .await
                .map_err(ce("delete an OAuth2 client"))?;
            out.deleted_entries = true;
            out.changes += 1;
        }
    }
    let prev_persons: BTreeMap<&str, &Person> = ps
        .persons
        .iter()
        .map(|p| (p.name.value.as_str(), p))
        .collect();
    let next_persons: BTreeMap<&str, &Person> = next
        .persons
        .iter()
        .map(|p| (p.name.value.as_str(), p))
        .collect();
    for (name, p) in &prev_persons {
        // Persons the scenario does not mention stay (see `server_state`).
        let recreate = next_persons.get(name).is_some_and(|n| !keepable(p, n));
        if recreate {
            kc.idm_person_account_delete(name)
                .await
                .map_err(ce("delete a person"))?;
            out.replaced_persons.push(name.to_string());
            out.deleted_entries = true;
            out.changes += 1;
        }
    }
    let next_groups = names(&next.groups, |g| &g.name.value);
    let prev_groups = names(&ps.groups, |g| &g.name.value);
    let deleted_groups: BTreeSet<String> = prev_groups.difference(&next_groups).cloned().collect();
    for g in &deleted_groups {
        kc.idm_group_delete(g).await.map_err(ce("delete a group"))?;
        out.changes += 1;
    }
    for g in next_groups.difference(&prev_groups) {
        kc.idm_group_create(g, None)
            .await
            .map_err(ce("create a group"))?;
        out.changes += 1;
    }

    // Persons: create the new ones, update the kept ones.
    let mut created = Vec::new();
    for p in &next.persons {
        let name = p.name.value.as_str();
        match prev_persons.get(name).filter(|old| keepable(old, p)) {
            Some(old) => {
                if old.display_name != p.display_name || old.mail != p.mail {
                    kc.idm_person_account_update(name, None, Some(&p.display_name), None, None)
                        .await
                        .map_err(ce("update a person's display name"))?;
                    if p.mail.is_empty() {
                        kc.idm_person_account_purge_attr(name, "mail")
                            .await
                            .map_err(ce("remove a person's mail"))?;
                    } else {
                        kc.idm_person_account_update(name, None, None, None, Some(&p.mail))
                            .await
                            .map_err(ce("set a person's mail"))?;
                    }
                    out.changes += 1;
                }
                let secrets = pp
                    .secrets
                    .get(name)
                    .cloned()
                    .ok_or_else(|| anyhow!("no recorded credentials for kept person {name}"))?;
                out.provisioned.secrets.insert(name.to_string(), secrets);
                let uuid = pp
                    .uuids
                    .get(name)
                    .cloned()
                    .ok_or_else(|| anyhow!("no recorded UUID for kept person {name}"))?;
                out.provisioned.uuids.insert(name.to_string(), uuid);
            }
            None => {
                kc.idm_person_account_create(name, &p.display_name)
                    .await
                    .map_err(ce("create a person"))?;
                if !p.mail.is_empty() {
                    kc.idm_person_account_update(name, None, None, None, Some(&p.mail))
                        .await
                        .map_err(ce("set a person's mail"))?;
                }
                created.push(p);
                out.changes += 1;
            }
        }
    }

    // Persons the scenario does not mention: kept, in no group.
    let mut server_state = next.clone();
    for (name, p) in &prev_persons {
        if next_persons.contains_key(name) {
            continue;
        }
        let mut dormant = (*p).clone();
        dormant.groups.clear();
        server_state.persons.push(dormant);
        if let Some(v) = pp.uuids.get(*name) {
            out.provisioned.uuids.insert(name.to_string(), v.clone());
        }
        if let Some(v) = pp.secrets.get(*name) {
            out.provisioned.secrets.insert(name.to_string(), v.clone());
        }
    }

    // Memberships: set each group's members exactly.
    for g in &next.groups {
        let gname = g.name.value.as_str();
        let want = members_of(next, gname);
        let existed = prev_groups.contains(gname);
        // Members deleted above left the group by themselves; recreated ones must rejoin.
        let had: Vec<String> = members_of(ps, gname)
            .into_iter()
            .filter(|m| !out.replaced_persons.contains(m))
            .collect();
        if existed && had == want {
            continue;
        }
        if want.is_empty() {
            if existed && !had.is_empty() {
                kc.idm_group_purge_members(gname)
                    .await
                    .map_err(ce("remove group members"))?;
                out.changes += 1;
            }
            continue;
        }
        let refs: Vec<&str> = want.iter().map(String::as_str).collect();
        kc.idm_group_set_members(gname, &refs)
            .await
            .map_err(ce("set group members"))?;
        out.changes += 1;
    }

    // Credentials and UUIDs of new persons.
    for p in created {
        let name = p.name.value.as_str();
        let secrets = enrol(kc, p).await?;
        out.provisioned.secrets.insert(name.to_string(), secrets);
        let entry = kc
            .idm_person_account_get(name)
            .await
            .map_err(ce("read a person back"))?
            .ok_or_else(|| anyhow!("person {name} vanished after creation"))?;
        let uuid = entry
            .attrs
            .get("uuid")
            .and_then(|v| v.first())
            .cloned()
            .ok_or_else(|| anyhow!("person {name} has no uuid"))?;
        out.provisioned.uuids.insert(name.to_string(), uuid);
    }

    // Clients: create or change in place, then read back.
    let prev_clients: BTreeMap<&str, &OAuth2Client> = ps
        .oauth2_clients
        .iter()
        .map(|c| (c.name.value.as_str(), c))
        .collect();
    for c in &next.oauth2_clients {
        let name = c.name.value.as_str();
        let old = match prev_clients.get(name) {
            Some(old) if old.public == c.public => Some(*old),
            Some(_) => {
                kc.idm_oauth2_rs_delete(name)
                    .await
                    .map_err(ce("delete an OAuth2 client"))?;
                out.deleted_entries = true;
                None
            }
            None => None,
        };
        if old.is_none() {
            if c.public {
                kc.idm_oauth2_rs_public_create(name, &c.display_name, &c.landing_url)
                    .await
                    .map_err(ce("create a public OAuth2 client"))?;
            } else {
                kc.idm_oauth2_rs_basic_create(name, &c.display_name, &c.landing_url)
                    .await
                    .map_err(ce("create an OAuth2 client"))?;
            }
            out.changes += 1;
        }
        out.changes += configure_client(kc, s, old, c, &deleted_groups).await?;
        let readback = provision::read_back(kc, http, endpoint, name).await?;
        out.provisioned.clients.insert(name.to_string(), readback);
    }
    for g in &next.groups {
        let members = provision::read_members(kc, &g.name.value).await?;
        out.provisioned
            .members
            .insert(g.name.value.clone(), members);
    }
    out.server_state = server_state;
    Ok(out)
}

async fn enrol(kc: &KanidmClient, p: &Person) -> Result<PersonSecrets> {
    let name = p.name.value.as_str();
    Ok(match p.credential {
        CredentialKind::PasswordTotp => {
            provision::enrol_password(kc, name, &p.display_name, &p.mail, true).await?
        }
        CredentialKind::Password => {
            provision::enrol_password(kc, name, &p.display_name, &p.mail, false).await?
        }
        CredentialKind::Passkey => {
            let intent = kc
                .idm_person_account_credential_update_intent(name, Some(900))
                .await
                .map_err(ce("create a credential reset token"))?;
            PersonSecrets {
                password: String::new(),
                totp: None,
                reset_token: Some(intent.token),
            }
        }
    })
}

/// Change a client from `old` (None: just created, Kanidm's defaults) to `c`. Returns the
/// number of write calls.
async fn configure_client(
    kc: &KanidmClient,
    s: &LoadedScenario,
    old: Option<&OAuth2Client>,
    c: &OAuth2Client,
    deleted_groups: &BTreeSet<String>,
) -> Result<usize> {
    let name = c.name.value.as_str();
    let mut n = 0;
    if let Some(o) = old
        && (o.display_name != c.display_name || o.landing_url != c.landing_url)
    {
        kc.idm_oauth2_rs_update(
            name,
            None,
            Some(&c.display_name),
            Some(&c.landing_url),
            false,
        )
        .await
        .map_err(ce("update an OAuth2 client"))?;
        n += 1;
    }
    let old_urls: BTreeSet<&String> = old
        .map(|o| o.redirect_urls.iter().collect())
        .unwrap_or_default();
    let new_urls: BTreeSet<&String> = c.redirect_urls.iter().collect();
    for u in old_urls.difference(&new_urls) {
        let url = url::Url::parse(u).with_context(|| format!("redirect URL {u}"))?;
        kc.idm_oauth2_client_remove_origin(name, &url)
            .await
            .map_err(ce("remove a redirect URL"))?;
        n += 1;
    }
    for u in new_urls.difference(&old_urls) {
        let url = url::Url::parse(u).with_context(|| format!("redirect URL {u}"))?;
        kc.idm_oauth2_client_add_origin(name, &url)
            .await
            .map_err(ce("add a redirect URL"))?;
        n += 1;
    }
    if old.is_some_and(|o| o.localhost_redirects) != c.localhost_redirects {
        if c.localhost_redirects {
            kc.idm_oauth2_rs_enable_public_localhost_redirect(name)
                .await
                .map_err(ce("enable localhost redirects"))?;
        } else {
            kc.idm_oauth2_rs_disable_public_localhost_redirect(name)
                .await
                .map_err(ce("disable localhost redirects"))?;
        }
        n += 1;
    }
    n += sync_scope_maps(
        kc,
        name,
        old.map(|o| &o.scope_maps[..]),
        &c.scope_maps,
        deleted_groups,
        false,
    )
    .await?;
    n += sync_scope_maps(
        kc,
        name,
        old.map(|o| &o.sup_scope_maps[..]),
        &c.sup_scope_maps,
        deleted_groups,
        true,
    )
    .await?;
    if old.is_some_and(|o| o.legacy_crypto) != c.legacy_crypto {
        if c.legacy_crypto {
            kc.idm_oauth2_rs_enable_legacy_crypto(name)
                .await
                .map_err(ce("enable legacy crypto"))?;
        } else {
            kc.idm_oauth2_rs_disable_legacy_crypto(name)
                .await
                .map_err(ce("disable legacy crypto"))?;
        }
        n += 1;
    }
    if old.is_some_and(|o| o.prefer_short_username) != c.prefer_short_username {
        if c.prefer_short_username {
            kc.idm_oauth2_rs_prefer_short_username(name)
                .await
                .map_err(ce("prefer short usernames"))?;
        } else {
            kc.idm_oauth2_rs_prefer_spn_username(name)
                .await
                .map_err(ce("prefer SPN usernames"))?;
        }
        n += 1;
    }
    let old_claims: Vec<_> = old
        .map(|o| o.claim_maps.iter().map(claim_key).collect())
        .unwrap_or_default();
    let new_claims: Vec<_> = c.claim_maps.iter().map(claim_key).collect();
    if old_claims != new_claims {
        let pairs: BTreeSet<(String, String)> = old_claims
            .iter()
            .map(|k| (k.0.clone(), k.1.clone()))
            .collect();
        for (claim, group) in pairs {
            kc.idm_oauth2_rs_delete_claim_map(name, &claim, &group)
                .await
                .map_err(ce("delete a claim map"))?;
            n += 1;
        }
        for m in &c.claim_maps {
            kc.idm_oauth2_rs_update_claim_map(name, &m.claim.value, &m.group.value, &m.values)
                .await
                .map_err(ce("set a claim map"))?;
            n += 1;
            if let Some(join) = m.join {
                let j = match join {
                    ClaimJoin::Array => kanidm_proto::internal::Oauth2ClaimMapJoin::Array,
                    ClaimJoin::Csv => kanidm_proto::internal::Oauth2ClaimMapJoin::Csv,
                    ClaimJoin::Ssv => kanidm_proto::internal::Oauth2ClaimMapJoin::Ssv,
                };
                kc.idm_oauth2_rs_update_claim_map_join(name, &m.claim.value, j)
                    .await
                    .map_err(ce("set a claim map join"))?;
            }
        }
    }
    let old_image = old.and_then(|o| o.image.as_deref());
    if old_image != c.image.as_deref() {
        match &c.image {
            Some(img) => {
                kc.idm_oauth2_rs_update_image(name, read_image(s, img)?)
                    .await
                    .map_err(ce("upload the client image"))?;
            }
            None => {
                kc.idm_oauth2_rs_delete_image(name)
                    .await
                    .map_err(ce("remove the client image"))?;
            }
        }
        n += 1;
    }
    Ok(n)
}

async fn sync_scope_maps(
    kc: &KanidmClient,
    client: &str,
    old: Option<&[ScopeMap]>,
    new: &[ScopeMap],
    deleted_groups: &BTreeSet<String>,
    sup: bool,
) -> Result<usize> {
    let old: BTreeMap<&str, &ScopeMap> = old
        .unwrap_or_default()
        .iter()
        .map(|m| (m.group.value.as_str(), m))
        .collect();
    let mut n = 0;
    let wanted: BTreeSet<&str> = new.iter().map(|m| m.group.value.as_str()).collect();
    // Kanidm already dropped the maps of deleted groups.
    for group in old
        .keys()
        .filter(|g| !wanted.contains(*g) && !deleted_groups.contains(**g))
    {
        if sup {
            kc.idm_oauth2_rs_delete_sup_scope_map(client, group)
                .await
                .map_err(ce("delete a supplementary scope map"))?;
        } else {
            kc.idm_oauth2_rs_delete_scope_map(client, group)
                .await
                .map_err(ce("delete a scope map"))?;
        }
        n += 1;
    }
    for m in new {
        if old
            .get(m.group.value.as_str())
            .is_some_and(|o| scope_set(o) == scope_set(m))
        {
            continue;
        }
        let scopes: Vec<&str> = m.scopes.iter().map(|s| s.value.as_str()).collect();
        if sup {
            kc.idm_oauth2_rs_update_sup_scope_map(client, &m.group.value, scopes)
                .await
                .map_err(ce("set a supplementary scope map"))?;
        } else {
            kc.idm_oauth2_rs_update_scope_map(client, &m.group.value, scopes)
                .await
                .map_err(ce("set a scope map"))?;
        }
        n += 1;
    }
    Ok(n)
}

fn read_image(s: &LoadedScenario, img: &str) -> Result<kanidm_proto::internal::ImageValue> {
    let path = s
        .path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(img);
    let bytes =
        std::fs::read(&path).with_context(|| format!("reading client image {}", path.display()))?;
    let filetype = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => kanidm_proto::internal::ImageType::Png,
        Some("jpg") | Some("jpeg") => kanidm_proto::internal::ImageType::Jpg,
        Some("gif") => kanidm_proto::internal::ImageType::Gif,
        Some("svg") => kanidm_proto::internal::ImageType::Svg,
        Some("webp") => kanidm_proto::internal::ImageType::Webp,
        _ => bail!(
            "client image {} must be png, jpg, gif, svg or webp",
            path.display()
        ),
    };
    Ok(kanidm_proto::internal::ImageValue::new(
        img.to_string(),
        filetype,
        bytes,
    ))
}
