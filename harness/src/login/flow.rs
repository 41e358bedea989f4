//! One person's login, driven by page state (never by sleeps).

use super::browser::{self, Browser, Page};
use super::oidc::{self, RedirectListener, VerifiedToken};
use crate::kanidm::PersonSecrets;
use anyhow::{Context, Result, anyhow, bail};
use fantoccini::Client;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Person<'a> {
    pub name: &'a str,
    pub secrets: &'a PersonSecrets,
    pub passkey: bool,
}

/// What happened, as a scenario can expect it.
#[derive(Debug, Clone)]
pub enum LoginOutcomeActual {
    Token(VerifiedToken),
    /// Kanidm's "Access Denied" page (no scope-mapped group).
    AccessDenied,
    /// "Login Failed" with Kanidm's reason.
    LoginFailed(String),
    /// Kanidm's error page (bad client, redirect URI, lost cookies…).
    Error(String),
}

impl LoginOutcomeActual {
    pub fn label(&self) -> String {
        match self {
            Self::Token(t) => match &t.kubelogin {
                Some(k) => format!("token ({}) from kubelogin: {}", t.alg, k.note),
                None => format!("token ({})", t.alg),
            },
            Self::AccessDenied => "access denied".into(),
            Self::LoginFailed(r) => format!("login failed: {r}"),
            Self::Error(e) => format!("error page: {e}"),
        }
    }
}

pub struct LoginRequest<'a> {
    pub issuer: &'a str,
    /// Kanidm origin (for the credential reset page).
    pub origin: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [String],
    pub redirect_port: Option<u16>,
    pub redirect_path: &'a str,
    pub spki_pin: &'a str,
    /// Where screenshots/HTML go when the login fails unexpectedly.
    pub artifacts: &'a Path,
}

/// One login in a fresh browser profile, closed afterwards.
pub async fn login(
    browser: &Browser,
    http: &reqwest::Client,
    req: &LoginRequest<'_>,
    person: &Person<'_>,
) -> Result<LoginOutcomeActual> {
    let client = browser.session(person.name, req.spki_pin).await?;
    let out = login_in(&client, true, http, req, person).await;
    super::browser::close_session(client).await;
    out
}

/// One login in `client`'s browser. `fresh`: the profile is new (a passkey person enrols
/// here); otherwise the person may still have a Kanidm session, and Kanidm decides what to
/// show (consent, Access Denied, or straight back to the redirect).
/// A whole login (pages, passkey enrolment, redirect, code exchange) never takes longer:
/// a WebDriver call that hangs cannot hang the run. Measured: 0.6–2.9 s.
const LOGIN_DEADLINE: Duration = Duration::from_secs(120);

pub async fn login_in(
    client: &Client,
    fresh: bool,
    http: &reqwest::Client,
    req: &LoginRequest<'_>,
    person: &Person<'_>,
) -> Result<LoginOutcomeActual> {
    tokio::time::timeout(
        LOGIN_DEADLINE,
        login_in_unbounded(client, fresh, http, req, person),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "the login of {} did not finish within {} s",
            person.name,
            LOGIN_DEADLINE.as_secs()
        )
    })?
}

async fn login_in_unbounded(
    client: &Client,
    fresh: bool,
    http: &reqwest::Client,
    req: &LoginRequest<'_>,
    person: &Person<'_>,
) -> Result<LoginOutcomeActual> {
    let t_session = Instant::now();
    let disco = oidc::discover(http, req.issuer).await?;
    // A fixed port is the machine's: hold it until the redirect is back (the listener's
    // task owns the lock with the listener).
    let ports = match req.redirect_port {
        Some(_) => Some(super::redirect_ports::take(&format!("{}'s login", person.name)).await?),
        None => None,
    };
    let listener = RedirectListener::bind(req.redirect_port, req.redirect_path).await?;
    let auth = oidc::auth_request(&disco, req.client_id, req.scopes, &listener.redirect_uri())?;
    let redirect_prefix = listener.redirect_uri();
    if person.passkey && fresh {
        super::webauthn::add_virtual_authenticator(client).await?;
        if let Some(token) = &person.secrets.reset_token
            && let Err(e) = super::webauthn::enrol_passkey(client, req.origin, token).await
        {
            browser::save_artifacts(
                client,
                &req.artifacts.join(format!("enrol-{}", person.name)),
                &[],
            )
            .await;
            return Err(e.context(format!("enrolling a passkey for {}", person.name)));
        }
    }
    let state = auth.state.clone();
    let accept = tokio::spawn(async move {
        let got = listener.accept(&state, Duration::from_secs(60)).await;
        drop(ports);
        got
    });
    let session_time = t_session.elapsed();
    let t_flow = Instant::now();
    let mut trail = Vec::new();
    let result = drive(client, &auth.url, &redirect_prefix, person, &mut trail).await;
    let outcome = match result {
        Ok(Some(outcome)) => {
            if !matches!(outcome, LoginOutcomeActual::AccessDenied) {
                browser::save_artifacts(
                    client,
                    &req.artifacts.join(format!("login-{}", person.name)),
                    &trail,
                )
                .await;
            }
            accept.abort();
            outcome
        }
        Ok(None) => {
            let flow_time = t_flow.elapsed();
            let t_exchange = Instant::now();
            let (code, state) = accept
                .await
                .map_err(|e| anyhow!("redirect listener task: {e}"))??;
            let token =
                oidc::exchange_and_verify(http, &disco, req.client_id, auth, &code, &state).await?;
            tracing::debug!(
                person = person.name,
                fresh,
                setup_ms = session_time.as_millis() as u64,
                pages = trail.len(),
                pages_ms = flow_time.as_millis() as u64,
                exchange_ms = t_exchange.elapsed().as_millis() as u64,
                "login timings"
            );
            LoginOutcomeActual::Token(token)
        }
        Err(e) => {
            browser::save_artifacts(
                client,
                &req.artifacts.join(format!("login-{}", person.name)),
                &trail,
            )
            .await;
            accept.abort();
            return Err(e.context(format!(
                "logging {} in through the Kanidm UI; screenshot and page HTML are in {}",
                person.name,
                req.artifacts
                    .join(format!("login-{}", person.name))
                    .display()
            )));
        }
    };
    Ok(outcome)
}

/// Walk Kanidm's pages from `url` (opened by someone else's login, such as kubelogin's)
/// until the browser reaches `redirect_prefix` (Ok(None)) or a terminal Kanidm page
/// (Ok(Some)); within the login deadline, with screenshots and HTML saved unless it ended at
/// the redirect or on "Access Denied".
pub async fn drive_to_redirect(
    client: &Client,
    url: &url::Url,
    redirect_prefix: &str,
    person: &Person<'_>,
    artifacts: &Path,
) -> Result<Option<LoginOutcomeActual>> {
    let mut trail = Vec::new();
    let out = tokio::time::timeout(
        LOGIN_DEADLINE,
        drive(client, url, redirect_prefix, person, &mut trail),
    )
    .await
    .unwrap_or_else(|_| {
        Err(anyhow!(
            "the login of {} did not finish within {} s",
            person.name,
            LOGIN_DEADLINE.as_secs()
        ))
    });
    let dir = artifacts.join(format!("login-{}", person.name));
    match &out {
        Ok(None) | Ok(Some(LoginOutcomeActual::AccessDenied)) => {}
        _ => browser::save_artifacts(client, &dir, &trail).await,
    }
    out.map_err(|e| {
        e.context(format!(
            "logging {} in through the Kanidm UI; screenshot and page HTML are in {}",
            person.name,
            dir.display()
        ))
    })
}

fn browser_error(code: &str) -> anyhow::Error {
    if code.contains("CERT") {
        anyhow!(
            "Chromium did not trust the server's certificate ({code}); it trusts only the lab's pinned Kanidm key"
        )
    } else {
        anyhow!("Chromium could not load the page ({code})")
    }
}

/// Walk the pages until the redirect (Ok(None)) or a terminal Kanidm page (Ok(Some)).
async fn drive(
    client: &Client,
    url: &url::Url,
    redirect_prefix: &str,
    person: &Person<'_>,
    trail: &mut Vec<String>,
) -> Result<Option<LoginOutcomeActual>> {
    if let Some(code) = browser::open(client, url.as_str())
        .await
        .map_err(|e| anyhow!("opening the authorize URL: {e}"))?
    {
        return Err(browser_error(&code));
    }
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last_acted: Option<(Page, String)> = None;
    let mut last_error: Option<anyhow::Error> = None;
    loop {
        if Instant::now() > deadline {
            let why = last_error
                .map(|e| format!("; last error: {e:#}"))
                .unwrap_or_default();
            bail!(
                "login did not finish within 45 s (last page acted on: {:?}){why}",
                last_acted.map(|p| p.0)
            );
        }
        let here = client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let page = match browser::detect(client, redirect_prefix).await {
            Ok(p) => p,
            // The page navigated while we looked: look again.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if trail.last() != Some(&here) {
            trail.push(here.clone());
        }
        // Don't act twice on the same page: wait for it to change.
        if let Some((p, u)) = &last_acted
            && *p == page
            && *u == here
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        // Terminal pages first; everything else is an action that may race a navigation.
        match &page {
            Page::Redirected => return Ok(None),
            Page::AccessDenied => return Ok(Some(LoginOutcomeActual::AccessDenied)),
            Page::LoginFailed(r) => return Ok(Some(LoginOutcomeActual::LoginFailed(r.clone()))),
            Page::Error(e) => return Ok(Some(LoginOutcomeActual::Error(e.clone()))),
            Page::BrowserError(code) if code.is_empty() => bail!(
                "Chromium could not load the page after {} (its headless shell shows no error code)",
                trail
                    .iter()
                    .rev()
                    .find(|u| !u.starts_with("chrome-error:"))
                    .map(String::as_str)
                    .unwrap_or("the authorize URL")
            ),
            Page::BrowserError(code) => return Err(browser_error(code)),
            Page::Loading | Page::Unknown(_) | Page::Passkey => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            _ => {}
        }
        let acted = match act(client, &page, person).await {
            Ok(()) => true,
            // The page changed between looking and acting (stale or missing element):
            // look again; the deadline bounds this.
            Err(e) => {
                tracing::debug!("retrying after a page change: {e:#}");
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                false
            }
        };
        if acted {
            last_acted = Some((page, here));
        }
    }
}

/// Do what a person does on this page. Errors mean the page changed under us.
async fn act(client: &Client, page: &Page, person: &Person<'_>) -> Result<()> {
    match page {
        Page::Username => browser::fill_and_submit(client, "username", person.name).await,
        Page::Totp => {
            let key = person.secrets.totp.as_ref().ok_or_else(|| {
                anyhow!(
                    "Kanidm asks {} for a TOTP code, but none was enrolled",
                    person.name
                )
            })?;
            let (code, step) = key.next_unused_code().await?;
            browser::fill_and_submit(
                client,
                "totp",
                &format!("{code:0width$}", width = key.digits as usize),
            )
            .await?;
            // Submitted: this step's code is spent (Kanidm rejects reuse).
            if let Ok(mut last) = key.last_used_step.lock() {
                *last = (*last).max(step);
            }
            Ok(())
        }
        Page::Password => {
            if person.secrets.password.is_empty() {
                bail!(
                    "Kanidm asks {} for a password, but the scenario gives them none (passkey person?)",
                    person.name
                );
            }
            browser::fill_and_submit(client, "password", &person.secrets.password).await
        }
        Page::MechChoose => {
            let want = if person.passkey {
                "passkey"
            } else if person.secrets.totp.is_some() {
                "passwordmfa"
            } else {
                "password"
            };
            let script = "const f=[...document.querySelectorAll('form[action=\"/ui/login/mech_choose\"]')].find(f=>f.querySelector('input[name=mech]').value===arguments[0]); if(!f) return false; f.querySelector('button').click(); return true;";
            let ok = client
                .execute(script, vec![serde_json::json!(want)])
                .await
                .map_err(|e| anyhow!("choosing {want}: {e}"))?;
            if ok != serde_json::json!(true) {
                bail!(
                    "Kanidm does not offer the `{want}` login mechanism to {}",
                    person.name
                );
            }
            Ok(())
        }
        Page::Consent => browser::click_button_with_text(client, "Proceed")
            .await
            .context("consent page"),
        other => bail!("no action for page {other:?}"),
    }
}
