//! The changes of a step that are events on the server rather than state: renames,
//! account expiry, session revocation, client secrets and signing keys. Each is what the
//! `kanidm` CLI line in its `Display` does, through `kanidm_client`.

use crate::scenario::model::Change;
use anyhow::{Context, Result, anyhow};
use kanidm_client::KanidmClient;
use std::time::Duration;

/// The `kanidm` CLI line(s) a human would type for an event (`render` shows them).
pub fn cli_lines(c: &Change) -> Vec<String> {
    match c {
        Change::RenamePerson { person, to } => vec![format!(
            "kanidm person update {} --newname {}",
            person.value, to.value
        )],
        Change::ExpireAccount { person } => vec![format!(
            "kanidm person validity expire-at {} <now - 1 minute>",
            person.value
        )],
        Change::ClearAccountExpiry { person } => vec![format!(
            "kanidm person validity expire-at {} never",
            person.value
        )],
        Change::RevokeSessions { person } => vec![
            format!("kanidm login -D {}", person.value),
            format!(
                "kanidm person session list {} -D {}",
                person.value, person.value
            ),
            format!(
                "kanidm person session destroy {} <each session id> -D {}",
                person.value, person.value
            ),
        ],
        Change::ResetSecrets { client } => vec![format!(
            "kanidm system oauth2 reset-secrets {}",
            client.value
        )],
        Change::RotateSigningKey { client } => vec![
            format!(
                "kanidm system oauth2 rotate-cryptographic-keys {} now",
                client.value
            ),
            format!(
                "kanidm system oauth2 revoke-cryptographic-key {} <each previous key id>",
                client.value
            ),
        ],
        Change::StopKanidm => vec!["# stop kanidmd (its database stays)".into()],
        Change::StartKanidm => vec!["# start kanidmd again (same origin, same database)".into()],
        // State changes are planned by `kanidm::plan`.
        _ => Vec::new(),
    }
}

/// Run one event through the admin client. `jwks` is the client's JWKS URL (key rotation
/// waits until the old keys are gone from it). Stop/start are the server's, not this.
pub async fn execute(
    kc: &KanidmClient,
    c: &Change,
    http: &reqwest::Client,
    jwks: impl Fn(&str) -> String,
) -> Result<()> {
    let deadline = Duration::from_secs(30);
    let call = async {
        match c {
            Change::RenamePerson { person, to } => kc
                .idm_person_account_update(&person.value, Some(&to.value), None, None, None)
                .await
                .map_err(|e| anyhow!("renaming {} to {}: {e:?}", person.value, to.value)),
            Change::ExpireAccount { person } => {
                let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
                let when = past
                    .format(&time::format_description::well_known::Rfc3339)
                    .context("formatting the expiry time")?;
                kc.idm_person_account_set_attr(&person.value, "account_expire", &[when.as_str()])
                    .await
                    .map_err(|e| anyhow!("expiring {}: {e:?}", person.value))
            }
            Change::ClearAccountExpiry { person } => kc
                .idm_person_account_purge_attr(&person.value, "account_expire")
                .await
                .map_err(|e| anyhow!("clearing {}'s expiry: {e:?}", person.value)),
            Change::RevokeSessions { person } => Err(anyhow!(
                "revoking {}'s sessions takes their own login: see `revoke_sessions`",
                person.value
            )),
            Change::ResetSecrets { client } => kc
                .idm_oauth2_rs_update(&client.value, None, None, None, true)
                .await
                .map_err(|e| anyhow!("reset-secrets {}: {e:?}", client.value)),
            Change::RotateSigningKey { client } => {
                rotate_signing_key(kc, &client.value, http, &jwks(&client.value)).await
            }
            other => Err(anyhow!("{other:?} is not an event on the server")),
        }
    };
    tokio::time::timeout(deadline, call)
        .await
        .map_err(|_| anyhow!("{c:?} did not finish within {} s", deadline.as_secs()))?
}

/// The key ids the client's JWKS publishes now.
async fn key_ids(http: &reqwest::Client, jwks: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = http
        .get(jwks)
        .send()
        .await
        .with_context(|| format!("GET {jwks}"))?
        .json()
        .await
        .with_context(|| format!("{jwks} is not JSON"))?;
    Ok(v["keys"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// A new signing key from now, every previous one revoked; returns when the JWKS shows
/// only new keys.
async fn rotate_signing_key(
    kc: &KanidmClient,
    client: &str,
    http: &reqwest::Client,
    jwks: &str,
) -> Result<()> {
    let old = key_ids(http, jwks).await?;
    kc.idm_oauth2_rs_rotate_keys(client, time::OffsetDateTime::now_utc())
        .await
        .map_err(|e| anyhow!("rotating {client}'s keys: {e:?}"))?;
    for kid in &old {
        kc.idm_oauth2_rs_revoke_key(client, kid)
            .await
            .map_err(|e| anyhow!("revoking {client}'s key {kid}: {e:?}"))?;
    }
    crate::wait::until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            let now = key_ids(http, jwks).await?;
            Ok((!now.is_empty() && now.iter().all(|k| !old.contains(k))).then_some(()))
        },
        |after| {
            anyhow!(
                "{client}'s JWKS still showed a revoked key {} s after rotating",
                after.as_secs()
            )
        },
    )
    .await
}

/// Revoke every session of the person `as_person` is logged in as, through their own
/// client: Kanidm lets only the person read and revoke their sessions (an admin's list
/// comes back empty). The browser session their OAuth2 sessions hang from is recorded a
/// moment after the login, so it is waited for (3 s at most); the client's own session —
/// named by its token, not guessed from `issued_at`, which Kanidm gives in whole seconds
/// (a login and the revocation within one second tied, and the client's session went
/// first, leaving the browser's) — goes last. Returns how many sessions were revoked.
pub async fn revoke_sessions(as_person: &KanidmClient, name: &str) -> Result<usize> {
    let call = async {
        let own = match as_person.get_token().await {
            Some(t) => own_session_id(&t)?,
            None => return Err(anyhow!("{name}'s client holds no session token")),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let sessions = loop {
            let s = as_person
                .idm_account_list_user_auth_token(name)
                .await
                .map_err(|e| anyhow!("listing {name}'s sessions as {name}: {e:?}"))?;
            // A login's session joins the list a moment after the login (Kanidm persists
            // sessions shortly after issuing them; our own may not be listed yet either).
            if s.iter().any(|x| x.session_id.to_string() != own)
                || std::time::Instant::now() > deadline
            {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (mine, others): (Vec<_>, Vec<_>) = sessions
            .iter()
            .partition(|s| s.session_id.to_string() == own);
        for s in &others {
            as_person
                .idm_account_destroy_user_auth_token(name, s.session_id)
                .await
                .map_err(|e| anyhow!("destroying a session of {name}: {e:?}"))?;
        }
        // Our own, last (its refusal afterwards does not matter).
        for s in mine {
            let _ = as_person
                .idm_account_destroy_user_auth_token(name, s.session_id)
                .await;
        }
        Ok::<usize, anyhow::Error>(others.len())
    };
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .map_err(|_| anyhow!("revoking {name}'s sessions did not finish within 30 s"))?
}

/// The session a Kanidm client's bearer token belongs to: the token is a JWS whose payload
/// is the user auth token (`session_id`). Read, not verified: it is our own client's.
fn own_session_id(token: &str) -> Result<String> {
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|e| anyhow!("reading the client's session token: {e}"))?;
    claims["session_id"]
        .as_str()
        .map(|s| s.to_ascii_lowercase())
        .ok_or_else(|| anyhow!("the client's session token names no session_id"))
}

#[cfg(test)]
mod own_session_tests {
    use super::own_session_id;
    use base64::Engine;

    #[test]
    fn the_clients_session_is_read_from_its_token() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"ES256"}"#),
            b64(r#"{"session_id":"2AD91206-CEBD-4949-A5A3-A5B2FF46BC04","issued_at":1796639155}"#)
        );
        assert_eq!(
            own_session_id(&token).unwrap(),
            "2ad91206-cebd-4949-a5a3-a5b2ff46bc04"
        );
        assert!(own_session_id("not-a-jws").is_err());
        assert!(own_session_id(&format!("{}.{}.x", b64("{}"), b64(r#"{"uuid":"x"}"#))).is_err());
    }
}
