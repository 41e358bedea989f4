//! WebDriver WebAuthn extension commands (virtual authenticator) for passkeys.

use super::browser::SessionPost;
use anyhow::{Result, anyhow};
use fantoccini::Client;
use serde_json::json;

/// A CTAP2 platform authenticator with resident keys and automatic user verification,
/// like the YubiKey in post 2.
pub async fn add_virtual_authenticator(client: &Client) -> Result<String> {
    let v = client
        .issue_cmd(SessionPost {
            path: "webauthn/authenticator",
            body: json!({
                "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                "hasUserVerification": true, "isUserConsenting": true, "isUserVerified": true
            }),
        })
        .await
        .map_err(|e| anyhow!("adding a WebDriver virtual authenticator: {e}"))?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    crate::wait::until(
        std::time::Duration::from_secs(secs),
        std::time::Duration::from_millis(50),
        || {
            let done = f();
            async move { Ok(done.await.then_some(())) }
        },
        |after| anyhow!("timed out after {} s waiting for {what}", after.as_secs()),
    )
    .await
}

async fn js_bool(client: &Client, script: &str) -> bool {
    client
        .execute(script, vec![])
        .await
        .map(|v| v == json!(true))
        .unwrap_or(false)
}

/// Enrol a passkey through Kanidm's credential-reset page, as post 2 did with a YubiKey.
pub async fn enrol_passkey(client: &Client, origin: &str, reset_token: &str) -> Result<()> {
    client
        .goto(&format!("{origin}/ui/reset?token={reset_token}"))
        .await
        .map_err(|e| anyhow!("opening the credential reset page: {e}"))?;
    let click_text = |t: &'static str| {
        format!(
            "const b=[...document.querySelectorAll('button')].find(b=>b.textContent.trim()==='{t}' && b.offsetParent!==null); if(!b) return false; b.click(); return true;"
        )
    };
    let add = click_text("Add Passkey");
    wait_for("the `Add Passkey` button", 15, || js_bool(client, &add)).await?;
    wait_for("the passkey naming form", 15, || js_bool(client, "return !!document.getElementById('passkey-label') && document.getElementById('passkey-label').offsetParent!==null;")).await?;
    let name = "const i=document.getElementById('passkey-label'); i.value='kanidm-k8s-lab'; i.dispatchEvent(new Event('input',{bubbles:true})); const b=document.getElementById('passkeyNamingSubmitBtn'); if(!b||b.disabled) return false; b.click(); return true;";
    wait_for("the passkey `Add` button", 15, || js_bool(client, name)).await?;
    // Saving can be intercepted while a modal closes: keep trying until we leave the page.
    let save = click_text("Save Changes");
    wait_for("`Save Changes` to commit the passkey", 20, || async {
        let _ = js_bool(client, &save).await;
        client
            .current_url()
            .await
            .map(|u| u.path().starts_with("/ui/login"))
            .unwrap_or(false)
    })
    .await
}
