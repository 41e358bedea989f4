//! The lab's Kanidm administrator: a `kanidm_client` logged in as `idm_admin`, trusting
//! only the lab CA, and how its errors read.

use super::server::KanidmEndpoint;
use anyhow::{Result, anyhow};
use kanidm_client::{KanidmClient, KanidmClientBuilder};

/// Turn a `kanidm_client` error into "Kanidm refused to <what>: …".
pub(crate) fn ce(what: &str) -> impl FnOnce(kanidm_client::ClientError) -> anyhow::Error + '_ {
    move |e| anyhow!("Kanidm refused to {what}: {e:?}")
}

/// A client of the lab's Kanidm, trusting only the lab CA, with deadlines; not logged in.
fn lab_client(endpoint: &KanidmEndpoint) -> Result<KanidmClient> {
    KanidmClientBuilder::new()
        .address(endpoint.origin.clone())
        .enable_native_ca_roots(false)
        .add_root_certificate_filepath(&endpoint.ca_file.to_string_lossy())
        .map_err(ce("load the lab CA"))?
        .connect_timeout(10)
        .request_timeout(30)
        .no_proxy()
        .build()
        .map_err(ce("build a client"))
}

/// An admin client for the lab's Kanidm, logged in as `idm_admin`.
pub async fn admin_client(
    endpoint: &KanidmEndpoint,
    idm_admin_password: &str,
) -> Result<KanidmClient> {
    let client = lab_client(endpoint)?;
    client
        .auth_simple_password("idm_admin", idm_admin_password)
        .await
        .map_err(ce("log in idm_admin"))?;
    Ok(client)
}

/// A client logged in as a person with their own credentials (password, and TOTP when
/// enrolled): what `kanidm login -D <person>` gives. Kanidm lets only the person themselves
/// read and revoke their sessions.
pub async fn person_client(
    endpoint: &KanidmEndpoint,
    name: &str,
    secrets: &super::PersonSecrets,
) -> Result<KanidmClient> {
    if secrets.password.is_empty() {
        anyhow::bail!(
            "{name} has no password (a passkey person): the lab cannot log in as them without a browser"
        );
    }
    let client = lab_client(endpoint)?;
    match &secrets.totp {
        Some(key) => {
            let (code, step) = key.next_unused_code().await?;
            let r = client
                .auth_password_totp(name, &secrets.password, code)
                .await;
            key.mark_used(step);
            r.map_err(ce(&format!("log in as {name} (password + TOTP)")))?;
        }
        None => client
            .auth_simple_password(name, &secrets.password)
            .await
            .map_err(ce(&format!("log in as {name}")))?,
    }
    Ok(client)
}
