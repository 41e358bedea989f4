//! People's Kanidm sign-ins across a run, in one Chromium.
//!
//! A person's first login walks Kanidm's pages; afterwards their Kanidm session cookies are
//! saved, and restored before their next login, so later scenarios get single sign-on the
//! way a kubelogin user does (Kanidm still decides: consent, Access Denied or a code).
//! Switching people is a cookie swap (DevTools `Network.*Cookies`), not a browser start (a Chromium start costs
//! 0.5–0.8 s here). Passkey people keep a browser of their own: the virtual authenticator
//! lives in it.

use super::browser::{Browser, cdp, close_session};
use super::flow::{LoginOutcomeActual, LoginRequest, Person, login_in};
use anyhow::{Result, anyhow};
use fantoccini::Client;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The fields of a CDP `Cookie` that `Network.setCookies` takes back.
fn cookie_param(c: &Value) -> Value {
    let mut p = serde_json::Map::new();
    for k in [
        "name",
        "value",
        "domain",
        "path",
        "secure",
        "httpOnly",
        "sameSite",
        "priority",
        "sourceScheme",
        "sourcePort",
    ] {
        if let Some(v) = c.get(k) {
            p.insert(k.to_string(), v.clone());
        }
    }
    if c.get("session") != Some(&Value::Bool(true))
        && let Some(e) = c.get("expires")
    {
        p.insert("expires".into(), e.clone());
    }
    Value::Object(p)
}

#[derive(Default)]
pub struct SignIns {
    shared: Option<Client>,
    /// Whose cookies the shared browser holds now.
    current: Option<String>,
    /// Saved cookies of the people not in the shared browser now.
    jars: BTreeMap<String, Vec<Value>>,
    /// Passkey people: their own browser, with its virtual authenticator.
    own: BTreeMap<String, Client>,
}

/// How a login went, for timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The person had no Kanidm session in this run: the login walked Kanidm's pages.
    First,
    /// The person's Kanidm session was restored.
    SingleSignOn,
}

impl SignIns {
    /// People who have signed in and whose session is kept.
    pub fn people(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .jars
            .keys()
            .chain(self.current.iter())
            .chain(self.own.keys())
            .cloned()
            .collect();
        p.sort();
        p.dedup();
        p
    }

    pub async fn login(
        &mut self,
        browser: &Browser,
        http: &reqwest::Client,
        req: &LoginRequest<'_>,
        person: &Person<'_>,
    ) -> Result<(LoginOutcomeActual, Kind)> {
        if person.passkey {
            let fresh = !self.own.contains_key(person.name);
            if fresh {
                let c = browser.session(person.name, req.spki_pin).await?;
                self.own.insert(person.name.to_string(), c);
            }
            let c = self
                .own
                .get(person.name)
                .ok_or_else(|| anyhow!("no browser for {}", person.name))?;
            let out = login_in(c, fresh, http, req, person).await?;
            return Ok((
                out,
                if fresh {
                    Kind::First
                } else {
                    Kind::SingleSignOn
                },
            ));
        }
        if self.shared.is_none() {
            self.shared = Some(browser.session("lab", req.spki_pin).await?);
        }
        let kind = self.switch_to(person.name).await?;
        let c = self
            .shared
            .as_ref()
            .ok_or_else(|| anyhow!("no shared browser"))?;
        let out = login_in(c, false, http, req, person).await?;
        Ok((out, kind))
    }

    /// The browser `person` logs in with (the shared one, holding their Kanidm session),
    /// for a login someone else starts (kubelogin's). Passkey people are not supported here.
    pub async fn browser_for(
        &mut self,
        browser: &Browser,
        spki_pin: &str,
        person: &str,
    ) -> Result<(Client, Kind)> {
        if self.shared.is_none() {
            self.shared = Some(browser.session("lab", spki_pin).await?);
        }
        let kind = self.switch_to(person).await?;
        let c = self
            .shared
            .as_ref()
            .ok_or_else(|| anyhow!("no shared browser"))?;
        Ok((c.clone(), kind))
    }

    /// Put `name`'s cookies into the shared browser (saving the current person's).
    async fn switch_to(&mut self, name: &str) -> Result<Kind> {
        if self.current.as_deref() == Some(name) {
            return Ok(Kind::SingleSignOn);
        }
        let known = self.jars.contains_key(name);
        let c = self
            .shared
            .as_ref()
            .ok_or_else(|| anyhow!("no shared browser"))?;
        if let Some(cur) = self.current.take() {
            let all = cdp(c, "Network.getAllCookies", json!({})).await?;
            let saved = all["cookies"]
                .as_array()
                .map(|a| a.iter().map(cookie_param).collect())
                .unwrap_or_default();
            self.jars.insert(cur, saved);
        }
        cdp(c, "Network.clearBrowserCookies", json!({})).await?;
        let restore = self.jars.remove(name).unwrap_or_default();
        if !restore.is_empty() {
            cdp(c, "Network.setCookies", json!({ "cookies": restore }))
                .await
                .map_err(|e| anyhow!("restoring {name}'s Kanidm session: {e}"))?;
        }
        self.current = Some(name.to_string());
        Ok(if known {
            Kind::SingleSignOn
        } else {
            Kind::First
        })
    }

    /// The shared browser, with nobody in it, for the Kanidm server that replaces the one at
    /// `origin` (a Chromium start costs ~1.2 s of CPU here; a suite replaces Kanidm a dozen
    /// times). Every cookie is cleared (cookies ignore ports, and the new server is on the
    /// same host; on kind even on the same port), and everything else the old origin stored;
    /// the passkey people's browsers are closed.
    pub async fn hand_over(&mut self, origin: &str) -> SignIns {
        self.jars.clear();
        self.current = None;
        for (_, c) in std::mem::take(&mut self.own) {
            close_session(c).await;
        }
        let shared = self.shared.take();
        let cleared = async |c: &Client| {
            cdp(c, "Network.clearBrowserCookies", json!({})).await?;
            cdp(
                c,
                "Storage.clearDataForOrigin",
                json!({"origin": origin, "storageTypes": "all"}),
            )
            .await
        };
        if let Some(c) = &shared
            && cleared(c).await.is_err()
        {
            // A browser that cannot even clear its cookies is not handed on.
            close_session(c.clone()).await;
            return SignIns::default();
        }
        SignIns {
            shared,
            ..SignIns::default()
        }
    }

    /// Drop a person's sign-in (their entry was recreated).
    pub async fn forget(&mut self, name: &str) {
        self.jars.remove(name);
        if let Some(c) = self.own.remove(name) {
            close_session(c).await;
        }
        if self.current.as_deref() == Some(name) {
            // Their cookies stay in the browser until the next switch clears it.
            self.current = None;
        }
    }

    pub async fn close(&mut self) {
        self.jars.clear();
        self.current = None;
        if let Some(c) = self.shared.take() {
            close_session(c).await;
        }
        for (_, c) in std::mem::take(&mut self.own) {
            close_session(c).await;
        }
    }
}
