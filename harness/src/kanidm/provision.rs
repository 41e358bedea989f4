//! Bring a Kanidm server into the state a scenario describes, through `kanidm_client` as
//! `idm_admin` — what the posts did by hand with the `kanidm` CLI.

use super::server::KanidmEndpoint;
use crate::scenario::LoadedScenario;
use anyhow::{Context, Result, anyhow, bail};
use kanidm_client::{KanidmClient, KanidmClientBuilder};
use kanidm_proto::internal::{CURegState, CUSessionToken, CUStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A person's secrets; `Debug` never shows them.
#[derive(Clone)]
pub struct PersonSecrets {
    pub password: String,
    pub totp: Option<TotpKey>,
    /// For passkey persons: a credential-reset token for the browser to enrol with.
    pub reset_token: Option<String>,
}

impl fmt::Debug for PersonSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonSecrets")
            .field("password", &"<redacted>")
            .field("totp", &self.totp.as_ref().map(|_| "<redacted>"))
            .field(
                "reset_token",
                &self.reset_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// An enrolled TOTP key (Kanidm: HMAC-SHA256, 6 digits, 30 s).
#[derive(Clone)]
pub struct TotpKey {
    pub secret: Vec<u8>,
    pub step: u64,
    pub digits: u8,
    pub algorithm: totp_rs::Algorithm,
    /// The last time step whose code was used; Kanidm rejects a code twice.
    pub last_used_step: std::sync::Arc<std::sync::Mutex<u64>>,
}

impl TotpKey {
    pub fn code_at(&self, unix_secs: u64) -> Result<(u32, u64)> {
        let step_no = unix_secs / self.step;
        let totp = totp_rs::TOTP::new_unchecked(
            self.algorithm,
            self.digits as usize,
            0,
            self.step,
            self.secret.clone(),
        );
        let code = totp.generate(step_no * self.step);
        Ok((
            code.parse()
                .map_err(|_| anyhow!("TOTP code is not numeric"))?,
            step_no,
        ))
    }
}

/// What provisioning created, read back from the server.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub secrets: BTreeMap<String, PersonSecrets>,
    pub uuids: BTreeMap<String, String>,
    pub clients: BTreeMap<String, ClientReadback>,
    /// Each scenario group's members as Kanidm reports them (short names).
    pub members: BTreeMap<String, BTreeSet<String>>,
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

pub(crate) fn ce(what: &str) -> impl FnOnce(kanidm_client::ClientError) -> anyhow::Error + '_ {
    move |e| anyhow!("Kanidm refused to {what}: {e:?}")
}

/// An admin client for the lab's Kanidm, logged in as `idm_admin`.
pub async fn admin_client(
    endpoint: &KanidmEndpoint,
    idm_admin_password: &str,
) -> Result<KanidmClient> {
    let client = KanidmClientBuilder::new()
        .address(endpoint.origin.clone())
        .enable_native_ca_roots(false)
        .add_root_certificate_filepath(&endpoint.ca_file.to_string_lossy())
        .map_err(ce("load the lab CA"))?
        .connect_timeout(10)
        .request_timeout(30)
        .no_proxy()
        .build()
        .map_err(ce("build a client"))?;
    client
        .auth_simple_password("idm_admin", idm_admin_password)
        .await
        .map_err(ce("log in idm_admin"))?;
    Ok(client)
}

/// A strong random password that does not contain any of `avoid` (Kanidm rejects that).
pub fn generate_password(avoid: &[&str]) -> Result<String> {
    use base64::Engine;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    loop {
        let mut buf = [0u8; 24];
        provider
            .secure_random
            .fill(&mut buf)
            .map_err(|_| anyhow!("no secure randomness"))?;
        let pw = format!(
            "Lab-{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
        );
        let lower = pw.to_lowercase();
        if !avoid
            .iter()
            .any(|a| !a.is_empty() && lower.contains(&a.to_lowercase()))
        {
            return Ok(pw);
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) async fn enrol_password(
    kc: &KanidmClient,
    name: &str,
    display: &str,
    mail: &[String],
    with_totp: bool,
) -> Result<PersonSecrets> {
    let mut avoid = vec![name, display];
    avoid.extend(mail.iter().map(String::as_str));
    let password = generate_password(&avoid)?;
    let (session, _) = kc
        .idm_account_credential_update_begin(name)
        .await
        .map_err(ce("begin a credential update"))?;
    let status = kc
        .idm_account_credential_update_set_password(&session, &password)
        .await
        .map_err(ce("accept the generated password"))?;
    let mut totp = None;
    let status = if with_totp {
        let (status, key) = enrol_totp(kc, &session, name).await?;
        totp = Some(key);
        status
    } else {
        status
    };
    if !status.can_commit {
        bail!(
            "Kanidm will not commit {name}'s credentials (warnings: {:?})\n  help: a password-only person needs `credentialTypeMinimum: any`",
            status.warnings
        );
    }
    kc.idm_account_credential_update_commit(&session)
        .await
        .map_err(ce("commit credentials"))?;
    Ok(PersonSecrets {
        password,
        totp,
        reset_token: None,
    })
}

async fn enrol_totp(
    kc: &KanidmClient,
    session: &CUSessionToken,
    name: &str,
) -> Result<(CUStatus, TotpKey)> {
    let status = kc
        .idm_account_credential_update_init_totp(session)
        .await
        .map_err(ce("start TOTP enrolment"))?;
    let CURegState::TotpCheck(secret) = status.mfaregstate else {
        bail!(
            "Kanidm did not offer a TOTP secret for {name} (state {:?})",
            status.mfaregstate
        );
    };
    let key = TotpKey {
        secret: secret.secret.clone(),
        step: secret.step,
        digits: secret.digits,
        algorithm: match secret.algo {
            kanidm_proto::internal::TotpAlgo::Sha1 => totp_rs::Algorithm::SHA1,
            kanidm_proto::internal::TotpAlgo::Sha256 => totp_rs::Algorithm::SHA256,
            kanidm_proto::internal::TotpAlgo::Sha512 => totp_rs::Algorithm::SHA512,
        },
        last_used_step: Default::default(),
    };
    // Enrol with the previous step's code (Kanidm accepts current or previous), so the
    // current step stays unused for the first login.
    let now = unix_now();
    let (code, step) = key.code_at(now.saturating_sub(key.step))?;
    let status = kc
        .idm_account_credential_update_check_totp(session, code, "kanidm-k8s-lab")
        .await
        .map_err(ce("verify the TOTP code"))?;
    if !matches!(status.mfaregstate, CURegState::None) {
        bail!(
            "TOTP enrolment for {name} did not complete (state {:?})",
            status.mfaregstate
        );
    }
    if let Ok(mut last) = key.last_used_step.lock() {
        *last = step;
    }
    Ok((status, key))
}

/// Apply the scenario's Kanidm state to a fresh server. Returns secrets, UUIDs and the
/// read-back client state.
pub async fn apply(
    kc: &KanidmClient,
    s: &LoadedScenario,
    http: &reqwest::Client,
    endpoint: &KanidmEndpoint,
) -> Result<Provisioned> {
    Ok(super::reconcile::reconcile(kc, None, s, http, endpoint)
        .await?
        .provisioned)
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
pub fn verify(s: &LoadedScenario, p: &Provisioned, endpoint: &KanidmEndpoint) -> Vec<String> {
    let mut problems = Vec::new();
    for c in &s.scenario.kanidm.oauth2_clients {
        let name = &c.name.value;
        let Some(rb) = p.clients.get(name) else {
            problems.push(format!("client {name}: not read back"));
            continue;
        };
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
        if rb.issuer != endpoint.issuer(name) {
            problems.push(format!(
                "client {name}: issuer is {}, expected {}",
                rb.issuer,
                endpoint.issuer(name)
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
    }
    for g in &s.scenario.kanidm.groups {
        let name = &g.name.value;
        let want: BTreeSet<String> = s
            .scenario
            .kanidm
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
