//! Execute a Kanidm plan ([`super::plan`]) through `kanidm_client` as `idm_admin`, then read
//! back what a scenario can check. A fresh server is the plan from nothing.

use super::admin::ce;
use super::credentials;
use super::plan::{self, Op};
use super::readback::{self, Provisioned};
use super::server::KanidmEndpoint;
use crate::scenario::model::{ClaimJoin, KanidmState};
use anyhow::{Context, Result, anyhow, bail};
use kanidm_client::KanidmClient;
use std::path::Path;

/// The state to reach, and the scenario file's directory (client images are relative to it).
pub struct Desired<'a> {
    pub state: &'a KanidmState,
    pub dir: &'a Path,
}

impl<'a> Desired<'a> {
    pub fn of(s: &'a crate::scenario::LoadedScenario) -> Self {
        Desired {
            state: &s.scenario.kanidm,
            dir: s.path.parent().unwrap_or(Path::new(".")),
        }
    }
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

/// Bring the server from `prev` (None: a fresh server) to the scenario's state, then read
/// back what a scenario can check.
pub async fn reconcile(
    kc: &KanidmClient,
    prev: Option<Previous<'_>>,
    want: &Desired<'_>,
    http: &reqwest::Client,
    endpoint: &KanidmEndpoint,
) -> Result<Applied> {
    let next = want.state;
    let plan = plan::plan(prev.as_ref().map(|p| p.state), next)
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
        execute(kc, want, op, &mut out.provisioned)
            .await
            .with_context(|| format!("{op:?}"))?;
    }
    for c in &next.oauth2_clients {
        let name = c.name.value.as_str();
        let readback = readback::read_back(kc, http, endpoint, name).await?;
        out.provisioned.clients.insert(name.to_string(), readback);
    }
    for g in &next.groups {
        let members = readback::read_members(kc, &g.name.value).await?;
        out.provisioned
            .members
            .insert(g.name.value.clone(), members);
    }
    out.server_state = plan.server_state;
    Ok(out)
}

/// A fresh server brought to `want` (the plan from nothing), read back and verified:
/// Err names every difference ("Kanidm has X, scenario wanted Y").
pub async fn provision(
    kc: &KanidmClient,
    want: &Desired<'_>,
    http: &reqwest::Client,
    endpoint: &KanidmEndpoint,
) -> Result<Provisioned> {
    let applied = reconcile(kc, None, want, http, endpoint).await?;
    readback::ensure_matches(want.state, &applied.provisioned, endpoint)?;
    Ok(applied.provisioned)
}

/// One operation, as `kanidm_client` calls (a table: one arm per operation).
async fn execute(
    kc: &KanidmClient,
    want: &Desired<'_>,
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
        Op::Enrol(name, _) => {
            let person = want
                .state
                .persons
                .iter()
                .find(|p| p.name.value == *name)
                .ok_or_else(|| anyhow!("person {name} is not in the scenario"))?;
            let secrets = credentials::enrol(kc, person).await?;
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
            .idm_oauth2_rs_update_image(client, read_image(want.dir, file)?)
            .await
            .map_err(ce("upload the client image")),
        Op::DeleteImage { client } => kc
            .idm_oauth2_rs_delete_image(client)
            .await
            .map_err(ce("remove the client image")),
    }
}

/// A client image, relative to the scenario file's directory.
fn read_image(dir: &Path, img: &str) -> Result<kanidm_proto::internal::ImageValue> {
    let path = dir.join(img);
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
