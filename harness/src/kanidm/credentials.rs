//! People's credentials: generated passwords, TOTP enrolment (the key is kept to compute
//! codes at login), passkey reset tokens. Secrets never reach `Debug` output.

use super::admin::ce;
use crate::scenario::model::{CredentialKind, Person};
use anyhow::{Result, anyhow, bail};
use kanidm_client::KanidmClient;
use kanidm_proto::internal::{CURegState, CUSessionToken, CUStatus};
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
    /// A code for a time step not used yet (Kanidm rejects a code twice): waits for the
    /// next 30 s step when this one is spent. The caller marks the step used once submitted.
    pub async fn next_unused_code(&self) -> Result<(u32, u64)> {
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (code, step) = self.code_at(now)?;
            let fresh = {
                let last = self
                    .last_used_step
                    .lock()
                    .map_err(|_| anyhow::anyhow!("TOTP state poisoned"))?;
                step > *last
            };
            if fresh {
                return Ok((code, step));
            }
            let wait = self.step - now % self.step;
            tracing::info!(
                "TOTP code of this 30 s step already used; waiting {wait} s for the next one"
            );
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    }

    /// Record that `step`'s code was submitted.
    pub fn mark_used(&self, step: u64) {
        if let Ok(mut last) = self.last_used_step.lock() {
            *last = (*last).max(step);
        }
    }

    pub fn code_at(&self, unix_secs: u64) -> Result<(u32, u64)> {
        // Kanidm uses 30 s; a step read back from a (hand-edited) lab state must not divide
        // by zero or make a login wait for hours.
        if !(1..=300).contains(&self.step) {
            bail!(
                "TOTP step of {} s is not usable (Kanidm uses 30 s)",
                self.step
            );
        }
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

async fn enrol_password(
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

/// Credentials for a new person: password (+TOTP), or a passkey reset token the browser
/// enrols with.
pub async fn enrol(kc: &KanidmClient, p: &Person) -> Result<PersonSecrets> {
    let name = p.name.value.as_str();
    Ok(match p.credential {
        CredentialKind::PasswordTotp => {
            enrol_password(kc, name, &p.display_name, &p.mail, true).await?
        }
        CredentialKind::Password => {
            enrol_password(kc, name, &p.display_name, &p.mail, false).await?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(step: u64) -> TotpKey {
        TotpKey {
            secret: b"12345678901234567890".to_vec(),
            step,
            digits: 6,
            algorithm: totp_rs::Algorithm::SHA1,
            last_used_step: Default::default(),
        }
    }

    #[test]
    fn totp_codes_follow_rfc_6238_and_odd_steps_are_refused() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) → 287082 with 6.
        assert_eq!(key(30).code_at(59).unwrap(), (287082, 1));
        for step in [0, 301, u64::MAX] {
            let err = key(step).code_at(59).unwrap_err().to_string();
            assert!(err.contains("not usable"), "{step}: {err}");
        }
    }
}
