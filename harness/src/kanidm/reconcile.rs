//! Bring a running Kanidm from one scenario's state to the next, in place.
//!
//! A run keeps one Kanidm and changes only what differs between consecutive scenarios, so
//! people keep their Kanidm login session (single sign-on) and a later scenario's logins
//! skip the password/TOTP pages — what a kubelogin user sees the second time. From the
//! empty state this is the whole provisioning ([`super::provision::apply`]).
//!
//! [`plan`] is pure (scenario states in, operations out) and unit-tested; [`apply`] runs a
//! plan through `kanidm_client` and reads the result back. What cannot change in place
//! (the `idm_all_persons` credential policy) makes the run start a fresh Kanidm instead.

use super::provision::{self, PersonSecrets, Provisioned, ce};
use super::server::KanidmEndpoint;
use crate::scenario::LoadedScenario;
use crate::scenario::model::{
    ClaimJoin, ClaimMap, CredentialKind, KanidmState, OAuth2Client, Person, ScopeMap,
};
use anyhow::{Context, Result, anyhow, bail};
use kanidm_client::KanidmClient;
use std::collections::{BTreeMap, BTreeSet};

/// One write to Kanidm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CredentialPolicy(&'static str),
    DeleteClient(String),
    DeletePerson(String),
    DeleteGroup(String),
    CreateGroup(String),
    CreatePerson {
        name: String,
        display_name: String,
        mail: Vec<String>,
    },
    UpdatePerson {
        name: String,
        display_name: String,
        mail: Vec<String>,
    },
    /// Exactly these members (none: purge).
    SetMembers {
        group: String,
        members: Vec<String>,
    },
    /// Credentials for a new person (password+TOTP, password, or a passkey reset token).
    Enrol(String),
    CreateClient {
        name: String,
        public: bool,
        display_name: String,
        landing_url: String,
    },
    UpdateClient {
        name: String,
        display_name: String,
        landing_url: String,
    },
    RemoveRedirect {
        client: String,
        url: String,
    },
    AddRedirect {
        client: String,
        url: String,
    },
    LocalhostRedirects {
        client: String,
        on: bool,
    },
    DeleteScopeMap {
        client: String,
        group: String,
        sup: bool,
    },
    SetScopeMap {
        client: String,
        group: String,
        scopes: Vec<String>,
        sup: bool,
    },
    LegacyCrypto {
        client: String,
        on: bool,
    },
    PreferShortUsername {
        client: String,
        on: bool,
    },
    DeleteClaimMap {
        client: String,
        claim: String,
        group: String,
    },
    SetClaimMap {
        client: String,
        claim: String,
        group: String,
        values: Vec<String>,
        join: Option<ClaimJoin>,
    },
    SetImage {
        client: String,
        file: String,
    },
    DeleteImage {
        client: String,
    },
}

/// What to write, and what the server holds afterwards.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// The scenario's state plus persons it does not mention, kept in no group (their
    /// sign-in survives for later scenarios).
    pub server_state: KanidmState,
    /// Persons recreated because their credential kind changed: their Kanidm sessions are void.
    pub replaced_persons: Vec<String>,
    /// A person or client is deleted: tokens issued before may name entries (UUIDs, signing
    /// keys) that no longer exist.
    pub deleted_entries: bool,
    /// Persons whose entry (and so credentials, UUID and sessions) stays.
    pub kept_persons: Vec<String>,
}

/// The server's state before a change, and what provisioning recorded about it.
pub struct Previous<'a> {
    pub state: &'a KanidmState,
    pub provisioned: &'a Provisioned,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Secrets and UUIDs of every person on the server, read-back of the scenario's clients
    /// and group members.
    pub provisioned: Provisioned,
    pub server_state: KanidmState,
    pub replaced_persons: Vec<String>,
    pub deleted_entries: bool,
    /// How many writes were made (0 = the state was already right).
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

/// The writes that take a server from `prev` (None: a fresh server) to `next`.
/// Err: the change cannot be made in place (the caller starts a fresh server).
pub fn plan(prev: Option<&KanidmState>, next: &KanidmState) -> Result<Plan, String> {
    let empty = KanidmState::default();
    let fresh = prev.is_none();
    let ps = prev.unwrap_or(&empty);
    let mut p = Plan::default();
    if fresh {
        if let Some(min) = next.credential_type_minimum {
            p.ops.push(Op::CredentialPolicy(min.as_kanidm()));
        }
    } else if let Some(why) = in_place_blocker(ps, next) {
        return Err(why);
    }

    // Entries that go away: clients, then persons, then groups (Kanidm drops references
    // to deleted entries, such as scope maps and memberships, by itself).
    let next_clients: BTreeMap<&str, &OAuth2Client> = next
        .oauth2_clients
        .iter()
        .map(|c| (c.name.value.as_str(), c))
        .collect();
    let prev_clients: BTreeMap<&str, &OAuth2Client> = ps
        .oauth2_clients
        .iter()
        .map(|c| (c.name.value.as_str(), c))
        .collect();
    for (name, old) in &prev_clients {
        // Gone, or changing between public and confidential: delete (and maybe recreate).
        if next_clients
            .get(name)
            .is_none_or(|c| c.public != old.public)
        {
            p.ops.push(Op::DeleteClient(name.to_string()));
            p.deleted_entries = true;
        }
    }
    let prev_persons: BTreeMap<&str, &Person> = ps
        .persons
        .iter()
        .map(|x| (x.name.value.as_str(), x))
        .collect();
    let next_persons: BTreeMap<&str, &Person> = next
        .persons
        .iter()
        .map(|x| (x.name.value.as_str(), x))
        .collect();
    for (name, old) in &prev_persons {
        // Persons the scenario does not mention stay (see `server_state`).
        if next_persons
            .get(name)
            .is_some_and(|n| n.credential != old.credential)
        {
            p.ops.push(Op::DeletePerson(name.to_string()));
            p.replaced_persons.push(name.to_string());
            p.deleted_entries = true;
        }
    }
    let next_groups: BTreeSet<&str> = next.groups.iter().map(|g| g.name.value.as_str()).collect();
    let prev_groups: BTreeSet<&str> = ps.groups.iter().map(|g| g.name.value.as_str()).collect();
    let deleted_groups: BTreeSet<&str> = prev_groups.difference(&next_groups).copied().collect();
    for g in &deleted_groups {
        p.ops.push(Op::DeleteGroup(g.to_string()));
    }
    for g in next_groups.difference(&prev_groups) {
        p.ops.push(Op::CreateGroup(g.to_string()));
    }

    // Persons the scenario does not mention stay, in no group (first: they may hold a
    // mail address a scenario person is about to take).
    let mut server_state = next.clone();
    for (name, old) in &prev_persons {
        if !next_persons.contains_key(name) {
            let mut dormant = (*old).clone();
            dormant.groups.clear();
            // Mail is unique in Kanidm: a dormant person must not hold an address the
            // scenario gives someone else.
            if !dormant.mail.is_empty() {
                dormant.mail.clear();
                p.ops.push(Op::UpdatePerson {
                    name: name.to_string(),
                    display_name: dormant.display_name.clone(),
                    mail: Vec::new(),
                });
            }
            server_state.persons.push(dormant);
            p.kept_persons.push(name.to_string());
        }
    }

    // Persons: create the new (and recreated) ones, update the kept ones.
    let mut enrol = Vec::new();
    for x in &next.persons {
        let name = x.name.value.as_str();
        match prev_persons
            .get(name)
            .filter(|o| o.credential == x.credential)
        {
            Some(old) => {
                if old.display_name != x.display_name || old.mail != x.mail {
                    p.ops.push(Op::UpdatePerson {
                        name: name.to_string(),
                        display_name: x.display_name.clone(),
                        mail: x.mail.clone(),
                    });
                }
                p.kept_persons.push(name.to_string());
            }
            None => {
                p.ops.push(Op::CreatePerson {
                    name: name.to_string(),
                    display_name: x.display_name.clone(),
                    mail: x.mail.clone(),
                });
                enrol.push(name.to_string());
            }
        }
    }
    // Memberships: each group's members exactly.
    for g in &next.groups {
        let group = g.name.value.as_str();
        let want = members_of(next, group);
        let existed = prev_groups.contains(group);
        // Deleted members left the group by themselves; recreated ones must rejoin.
        let had: Vec<String> = members_of(ps, group)
            .into_iter()
            .filter(|m| !p.replaced_persons.contains(m))
            .collect();
        if had == want && (existed || want.is_empty()) {
            continue;
        }
        p.ops.push(Op::SetMembers {
            group: group.to_string(),
            members: want,
        });
    }
    p.ops.extend(enrol.into_iter().map(Op::Enrol));

    // Clients.
    for c in &next.oauth2_clients {
        let name = c.name.value.as_str();
        let old = prev_clients
            .get(name)
            .filter(|o| o.public == c.public)
            .copied();
        if old.is_none() {
            p.ops.push(Op::CreateClient {
                name: name.to_string(),
                public: c.public,
                display_name: c.display_name.clone(),
                landing_url: c.landing_url.clone(),
            });
        }
        plan_client(&mut p.ops, old, c, &deleted_groups);
    }
    p.server_state = server_state;
    Ok(p)
}

/// A client from `old` (None: just created, with Kanidm's defaults) to `c`.
fn plan_client(
    ops: &mut Vec<Op>,
    old: Option<&OAuth2Client>,
    c: &OAuth2Client,
    deleted_groups: &BTreeSet<&str>,
) {
    let client = c.name.value.clone();
    if let Some(o) = old
        && (o.display_name != c.display_name || o.landing_url != c.landing_url)
    {
        ops.push(Op::UpdateClient {
            name: client.clone(),
            display_name: c.display_name.clone(),
            landing_url: c.landing_url.clone(),
        });
    }
    let old_urls: BTreeSet<&String> = old
        .map(|o| o.redirect_urls.iter().collect())
        .unwrap_or_default();
    let new_urls: BTreeSet<&String> = c.redirect_urls.iter().collect();
    for u in old_urls.difference(&new_urls) {
        ops.push(Op::RemoveRedirect {
            client: client.clone(),
            url: u.to_string(),
        });
    }
    for u in new_urls.difference(&old_urls) {
        ops.push(Op::AddRedirect {
            client: client.clone(),
            url: u.to_string(),
        });
    }
    if old.is_some_and(|o| o.localhost_redirects) != c.localhost_redirects {
        ops.push(Op::LocalhostRedirects {
            client: client.clone(),
            on: c.localhost_redirects,
        });
    }
    for (sup, old_maps, new_maps) in [
        (false, old.map(|o| &o.scope_maps[..]), &c.scope_maps),
        (true, old.map(|o| &o.sup_scope_maps[..]), &c.sup_scope_maps),
    ] {
        let old_maps: BTreeMap<&str, &ScopeMap> = old_maps
            .unwrap_or_default()
            .iter()
            .map(|m| (m.group.value.as_str(), m))
            .collect();
        let wanted: BTreeSet<&str> = new_maps.iter().map(|m| m.group.value.as_str()).collect();
        // Kanidm already dropped the maps of deleted groups.
        for group in old_maps.keys() {
            if !wanted.contains(group) && !deleted_groups.contains(group) {
                ops.push(Op::DeleteScopeMap {
                    client: client.clone(),
                    group: group.to_string(),
                    sup,
                });
            }
        }
        for m in new_maps {
            let group = m.group.value.as_str();
            let same = old_maps
                .get(group)
                .is_some_and(|o| scope_set(o) == scope_set(m));
            if !same || deleted_groups.contains(group) {
                ops.push(Op::SetScopeMap {
                    client: client.clone(),
                    group: group.to_string(),
                    scopes: m.scopes.iter().map(|s| s.value.clone()).collect(),
                    sup,
                });
            }
        }
    }
    if old.is_some_and(|o| o.legacy_crypto) != c.legacy_crypto {
        ops.push(Op::LegacyCrypto {
            client: client.clone(),
            on: c.legacy_crypto,
        });
    }
    if old.is_some_and(|o| o.prefer_short_username) != c.prefer_short_username {
        ops.push(Op::PreferShortUsername {
            client: client.clone(),
            on: c.prefer_short_username,
        });
    }
    let old_claims: Vec<_> = old
        .map(|o| o.claim_maps.iter().map(claim_key).collect())
        .unwrap_or_default();
    let new_claims: Vec<_> = c.claim_maps.iter().map(claim_key).collect();
    if old_claims != new_claims {
        let pairs: BTreeSet<(String, String)> = old_claims
            .iter()
            .filter(|k| !deleted_groups.contains(k.1.as_str()))
            .map(|k| (k.0.clone(), k.1.clone()))
            .collect();
        for (claim, group) in pairs {
            ops.push(Op::DeleteClaimMap {
                client: client.clone(),
                claim,
                group,
            });
        }
        for (claim, group, values, join) in new_claims {
            ops.push(Op::SetClaimMap {
                client: client.clone(),
                claim,
                group,
                values,
                join,
            });
        }
    }
    if old.and_then(|o| o.image.as_deref()) != c.image.as_deref() {
        ops.push(match &c.image {
            Some(file) => Op::SetImage {
                client: client.clone(),
                file: file.clone(),
            },
            None => Op::DeleteImage { client },
        });
    }
}

/// Bring the server from `prev` (None: a fresh server) to the scenario's state, then read
/// back what a scenario can check.
pub async fn reconcile(
    kc: &KanidmClient,
    prev: Option<Previous<'_>>,
    s: &LoadedScenario,
    http: &reqwest::Client,
    endpoint: &KanidmEndpoint,
) -> Result<Applied> {
    let next = &s.scenario.kanidm;
    let plan = plan(prev.as_ref().map(|p| p.state), next)
        .map_err(|why| anyhow!("cannot change Kanidm in place: {why}"))?;
    let mut out = Applied {
        changes: plan.ops.len(),
        replaced_persons: plan.replaced_persons.clone(),
        deleted_entries: plan.deleted_entries,
        ..Default::default()
    };
    if let Some(prev) = &prev {
        for name in &plan.kept_persons {
            let secrets = prev
                .provisioned
                .secrets
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow!("no recorded credentials for kept person {name}"))?;
            out.provisioned.secrets.insert(name.clone(), secrets);
            let uuid = prev
                .provisioned
                .uuids
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow!("no recorded UUID for kept person {name}"))?;
            out.provisioned.uuids.insert(name.clone(), uuid);
        }
    }
    for op in &plan.ops {
        execute(kc, s, op, &mut out.provisioned)
            .await
            .with_context(|| format!("{op:?}"))?;
    }
    for c in &next.oauth2_clients {
        let name = c.name.value.as_str();
        let readback = provision::read_back(kc, http, endpoint, name).await?;
        out.provisioned.clients.insert(name.to_string(), readback);
    }
    for g in &next.groups {
        let members = provision::read_members(kc, &g.name.value).await?;
        out.provisioned
            .members
            .insert(g.name.value.clone(), members);
    }
    out.server_state = plan.server_state;
    Ok(out)
}

async fn execute(
    kc: &KanidmClient,
    s: &LoadedScenario,
    op: &Op,
    out: &mut Provisioned,
) -> Result<()> {
    match op {
        Op::CredentialPolicy(min) => kc
            .group_account_policy_credential_type_minimum_set("idm_all_persons", min)
            .await
            .map_err(ce("change the idm_all_persons account policy")),
        Op::DeleteClient(name) => kc
            .idm_oauth2_rs_delete(name)
            .await
            .map_err(ce("delete an OAuth2 client")),
        Op::DeletePerson(name) => kc
            .idm_person_account_delete(name)
            .await
            .map_err(ce("delete a person")),
        Op::DeleteGroup(name) => kc
            .idm_group_delete(name)
            .await
            .map_err(ce("delete a group")),
        Op::CreateGroup(name) => kc
            .idm_group_create(name, None)
            .await
            .map_err(ce("create a group")),
        Op::CreatePerson {
            name,
            display_name,
            mail,
        } => {
            kc.idm_person_account_create(name, display_name)
                .await
                .map_err(ce("create a person"))?;
            if !mail.is_empty() {
                kc.idm_person_account_update(name, None, None, None, Some(mail))
                    .await
                    .map_err(ce("set a person's mail"))?;
            }
            Ok(())
        }
        Op::UpdatePerson {
            name,
            display_name,
            mail,
        } => {
            kc.idm_person_account_update(name, None, Some(display_name), None, None)
                .await
                .map_err(ce("update a person's display name"))?;
            if mail.is_empty() {
                kc.idm_person_account_purge_attr(name, "mail")
                    .await
                    .map_err(ce("remove a person's mail"))
            } else {
                kc.idm_person_account_update(name, None, None, None, Some(mail))
                    .await
                    .map_err(ce("set a person's mail"))
            }
        }
        Op::SetMembers { group, members } if members.is_empty() => kc
            .idm_group_purge_members(group)
            .await
            .map_err(ce("remove group members")),
        Op::SetMembers { group, members } => {
            let refs: Vec<&str> = members.iter().map(String::as_str).collect();
            kc.idm_group_set_members(group, &refs)
                .await
                .map_err(ce("set group members"))
        }
        Op::Enrol(name) => {
            let person = s
                .scenario
                .kanidm
                .persons
                .iter()
                .find(|p| p.name.value == *name)
                .ok_or_else(|| anyhow!("person {name} is not in the scenario"))?;
            let secrets = enrol(kc, person).await?;
            out.secrets.insert(name.clone(), secrets);
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
            out.uuids.insert(name.clone(), uuid);
            Ok(())
        }
        Op::CreateClient {
            name,
            public: true,
            display_name,
            landing_url,
        } => kc
            .idm_oauth2_rs_public_create(name, display_name, landing_url)
            .await
            .map_err(ce("create a public OAuth2 client")),
        Op::CreateClient {
            name,
            display_name,
            landing_url,
            ..
        } => kc
            .idm_oauth2_rs_basic_create(name, display_name, landing_url)
            .await
            .map_err(ce("create an OAuth2 client")),
        Op::UpdateClient {
            name,
            display_name,
            landing_url,
        } => kc
            .idm_oauth2_rs_update(name, None, Some(display_name), Some(landing_url), false)
            .await
            .map_err(ce("update an OAuth2 client")),
        Op::RemoveRedirect { client, url } => {
            let url = url::Url::parse(url).with_context(|| format!("redirect URL {url}"))?;
            kc.idm_oauth2_client_remove_origin(client, &url)
                .await
                .map_err(ce("remove a redirect URL"))
        }
        Op::AddRedirect { client, url } => {
            let url = url::Url::parse(url).with_context(|| format!("redirect URL {url}"))?;
            kc.idm_oauth2_client_add_origin(client, &url)
                .await
                .map_err(ce("add a redirect URL"))
        }
        Op::LocalhostRedirects { client, on: true } => kc
            .idm_oauth2_rs_enable_public_localhost_redirect(client)
            .await
            .map_err(ce("enable localhost redirects")),
        Op::LocalhostRedirects { client, on: false } => kc
            .idm_oauth2_rs_disable_public_localhost_redirect(client)
            .await
            .map_err(ce("disable localhost redirects")),
        Op::DeleteScopeMap {
            client,
            group,
            sup: false,
        } => kc
            .idm_oauth2_rs_delete_scope_map(client, group)
            .await
            .map_err(ce("delete a scope map")),
        Op::DeleteScopeMap {
            client,
            group,
            sup: true,
        } => kc
            .idm_oauth2_rs_delete_sup_scope_map(client, group)
            .await
            .map_err(ce("delete a supplementary scope map")),
        Op::SetScopeMap {
            client,
            group,
            scopes,
            sup,
        } => {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            if *sup {
                kc.idm_oauth2_rs_update_sup_scope_map(client, group, scopes)
                    .await
                    .map_err(ce("set a supplementary scope map"))
            } else {
                kc.idm_oauth2_rs_update_scope_map(client, group, scopes)
                    .await
                    .map_err(ce("set a scope map"))
            }
        }
        Op::LegacyCrypto { client, on: true } => kc
            .idm_oauth2_rs_enable_legacy_crypto(client)
            .await
            .map_err(ce("enable legacy crypto")),
        Op::LegacyCrypto { client, on: false } => kc
            .idm_oauth2_rs_disable_legacy_crypto(client)
            .await
            .map_err(ce("disable legacy crypto")),
        Op::PreferShortUsername { client, on: true } => kc
            .idm_oauth2_rs_prefer_short_username(client)
            .await
            .map_err(ce("prefer short usernames")),
        Op::PreferShortUsername { client, on: false } => kc
            .idm_oauth2_rs_prefer_spn_username(client)
            .await
            .map_err(ce("prefer SPN usernames")),
        Op::DeleteClaimMap {
            client,
            claim,
            group,
        } => kc
            .idm_oauth2_rs_delete_claim_map(client, claim, group)
            .await
            .map_err(ce("delete a claim map")),
        Op::SetClaimMap {
            client,
            claim,
            group,
            values,
            join,
        } => {
            kc.idm_oauth2_rs_update_claim_map(client, claim, group, values)
                .await
                .map_err(ce("set a claim map"))?;
            if let Some(join) = join {
                let j = match join {
                    ClaimJoin::Array => kanidm_proto::internal::Oauth2ClaimMapJoin::Array,
                    ClaimJoin::Csv => kanidm_proto::internal::Oauth2ClaimMapJoin::Csv,
                    ClaimJoin::Ssv => kanidm_proto::internal::Oauth2ClaimMapJoin::Ssv,
                };
                kc.idm_oauth2_rs_update_claim_map_join(client, claim, j)
                    .await
                    .map_err(ce("set a claim map join"))?;
            }
            Ok(())
        }
        Op::SetImage { client, file } => kc
            .idm_oauth2_rs_update_image(client, read_image(s, file)?)
            .await
            .map_err(ce("upload the client image")),
        Op::DeleteImage { client } => kc
            .idm_oauth2_rs_delete_image(client)
            .await
            .map_err(ce("remove the client image")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str) -> KanidmState {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(format!("{name}.yaml"));
        crate::scenario::load_file(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .scenario
            .kanidm
    }

    fn ops(from: &str, to: &str) -> Plan {
        plan(Some(&state(from)), &state(to)).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"))
    }

    #[test]
    fn the_same_state_needs_no_writes() {
        for s in ["post1-structured", "post2-user-binding", "post2-passkey"] {
            let p = ops(s, s);
            assert!(p.ops.is_empty(), "{s}: {:?}", p.ops);
            assert!(p.replaced_persons.is_empty() && !p.deleted_entries);
        }
    }

    #[test]
    fn a_fresh_server_gets_everything_in_dependency_order() {
        let p = plan(None, &state("post1-structured")).unwrap();
        let pos = |want: &Op| {
            p.ops
                .iter()
                .position(|o| o == want)
                .unwrap_or_else(|| panic!("{want:?} not in {:?}", p.ops))
        };
        let group = pos(&Op::CreateGroup("k8s_users".into()));
        let members = pos(&Op::SetMembers {
            group: "k8s_users".into(),
            members: vec!["alice".into()],
        });
        let enrol = pos(&Op::Enrol("alice".into()));
        let client = pos(&Op::CreateClient {
            name: "k8s".into(),
            public: true,
            display_name: "Kubernetes".into(),
            landing_url: "https://kubernetes.io/".into(),
        });
        let map = pos(&Op::SetScopeMap {
            client: "k8s".into(),
            group: "k8s_admins".into(),
            scopes: vec![
                "openid".into(),
                "email".into(),
                "profile".into(),
                "groups".into(),
            ],
            sup: false,
        });
        assert!(group < members && members < enrol && enrol < client && client < map);
        assert!(p.ops.contains(&Op::LocalhostRedirects {
            client: "k8s".into(),
            on: true
        }));
        // Kanidm's defaults are not written again.
        assert!(!p.ops.iter().any(|o| matches!(
            o,
            Op::LegacyCrypto { on: false, .. } | Op::PreferShortUsername { on: false, .. }
        )));
    }

    #[test]
    fn the_legacy_crypto_fix_is_one_write() {
        assert_eq!(
            ops("post2-as-written", "post2-fix-legacy-crypto").ops,
            [Op::LegacyCrypto {
                client: "k8s".into(),
                on: true
            }]
        );
        assert_eq!(
            ops("post2-fix-legacy-crypto", "post2-fix-signing-algs").ops,
            [Op::LegacyCrypto {
                client: "k8s".into(),
                on: false
            }]
        );
    }

    #[test]
    fn a_changed_credential_kind_recreates_the_person_and_rejoins_their_groups() {
        let p = ops("post2-fix-signing-algs", "post2-passkey");
        assert_eq!(p.replaced_persons, ["datosh"]);
        assert!(p.deleted_entries);
        assert_eq!(
            p.ops,
            [
                Op::DeletePerson("datosh".into()),
                Op::CreatePerson {
                    name: "datosh".into(),
                    display_name: "Fabian Kammel".into(),
                    mail: vec!["fabian@example.com".into()],
                },
                Op::SetMembers {
                    group: "k8s_users".into(),
                    members: vec!["datosh".into()],
                },
                Op::Enrol("datosh".into()),
            ]
        );
    }

    #[test]
    fn people_not_mentioned_stay_in_no_group_and_deleted_groups_take_their_maps() {
        let p = ops("post1-structured", "post2-as-written");
        // alice and bob stay (their sign-in survives), in no group.
        for who in ["alice", "bob"] {
            assert!(p.kept_persons.iter().any(|k| k == who));
            let dormant = p
                .server_state
                .persons
                .iter()
                .find(|x| x.name.value == who)
                .unwrap();
            assert!(dormant.groups.is_empty());
        }
        assert!(!p.ops.iter().any(|o| matches!(o, Op::DeletePerson(_))));
        // Mail is unique in Kanidm: a dormant person gives theirs up.
        assert!(p.ops.contains(&Op::UpdatePerson {
            name: "alice".into(),
            display_name: "Alice Example".into(),
            mail: vec![],
        }));
        assert!(p.ops.contains(&Op::DeleteGroup("k8s_admins".into())));
        assert!(p.ops.contains(&Op::SetMembers {
            group: "k8s_users".into(),
            members: vec!["datosh".into()],
        }));
        // Kanidm drops the k8s_admins map with the group: deleting it again would 404.
        assert!(!p.ops.iter().any(|o| matches!(
            o,
            Op::DeleteScopeMap { group, .. } if group == "k8s_admins"
        )));
        // And the way back puts alice back into k8s_users and bob into k8s_admins.
        let back = plan(Some(&p.server_state), &state("post1-structured")).unwrap();
        assert!(back.ops.contains(&Op::SetMembers {
            group: "k8s_admins".into(),
            members: vec!["bob".into()],
        }));
        assert!(back.ops.contains(&Op::SetMembers {
            group: "k8s_users".into(),
            members: vec!["alice".into()],
        }));
        assert!(
            !back
                .ops
                .iter()
                .any(|o| matches!(o, Op::CreatePerson { .. }))
        );
    }

    #[test]
    fn client_settings_change_in_place() {
        let p = ops("post2-fix-signing-algs", "prefer-short-username");
        for want in [
            Op::UpdateClient {
                name: "k8s".into(),
                display_name: "Kubernetes".into(),
                landing_url: "https://kubernetes.io/".into(),
            },
            Op::RemoveRedirect {
                client: "k8s".into(),
                url: "http://localhost:8000".into(),
            },
            Op::PreferShortUsername {
                client: "k8s".into(),
                on: true,
            },
            Op::SetScopeMap {
                client: "k8s".into(),
                group: "k8s_users".into(),
                scopes: vec!["openid".into(), "profile".into(), "groups".into()],
                sup: false,
            },
        ] {
            assert!(p.ops.contains(&want), "{want:?} not in {:?}", p.ops);
        }
        assert!(!p.ops.iter().any(|o| matches!(o, Op::DeleteClient(_))));
        let img = ops("post2-user-binding", "post2-fix-signing-algs");
        assert!(img.ops.contains(&Op::DeleteImage {
            client: "k8s".into()
        }));
    }

    #[test]
    fn a_credential_policy_change_cannot_be_made_in_place() {
        let mut policy = state("post1-structured");
        policy.credential_type_minimum = Some(crate::scenario::model::CredentialTypeMinimum::Any);
        let err = plan(Some(&state("post1-structured")), &policy).unwrap_err();
        assert!(err.contains("credential policy"), "{err}");
        // A fresh server simply gets it.
        let fresh = plan(None, &policy).unwrap();
        assert_eq!(fresh.ops[0], Op::CredentialPolicy("any"));
    }
}
