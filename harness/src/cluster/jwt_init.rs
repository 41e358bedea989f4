//! Will kube-apiserver's JWT authenticators initialise with this structured config?
//!
//! An authenticator initialises once discovery answers over TLS it trusts and names the
//! configured issuer. A reload whose authenticator cannot initialise is not applied: the API
//! server keeps the old config and counts a failure only after a minute. Scenarios test
//! exactly such configs (untrusted CA, issuer mismatch), so the kind backend asks first and
//! restarts the API server on the new file instead of waiting for a reload that cannot happen.

use serde_json::Value;
use std::time::Duration;

/// One JWT authenticator's discovery, as the API server would do it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub url: String,
    /// PEM from `certificateAuthority`; `None` = the API server's system roots.
    pub ca_pem: Option<String>,
}

/// The discoveries a structured config asks for (pure).
pub fn discoveries(config_yaml: &str) -> Result<Vec<Discovery>, String> {
    let v: Value =
        serde_saphyr::from_str(config_yaml).map_err(|e| format!("parsing the config: {e}"))?;
    let list = v["jwt"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|j| {
            let issuer = j["issuer"]["url"]
                .as_str()
                .ok_or("a jwt entry has no issuer.url")?
                .to_string();
            let url = match j["issuer"]["discoveryURL"].as_str() {
                Some(d) => d.to_string(),
                None => format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                ),
            };
            Ok(Discovery {
                issuer,
                url,
                ca_pem: j["issuer"]["certificateAuthority"]
                    .as_str()
                    .map(str::to_string),
            })
        })
        .collect()
}

/// Why the authenticator for `d` would not initialise (`None`: it would).
pub async fn blocker(d: &Discovery) -> Option<String> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5));
    if let Some(pem) = &d.ca_pem {
        match reqwest::Certificate::from_pem(pem.as_bytes()) {
            Ok(c) => b = b.tls_certs_only([c]),
            Err(e) => return Some(format!("certificateAuthority does not parse: {e}")),
        }
    }
    let client = match b.build() {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot build a client: {e}")),
    };
    let resp = match client.get(&d.url).send().await {
        Ok(r) => r,
        Err(e) => return Some(format!("discovery {} failed: {e:#}", d.url)),
    };
    if !resp.status().is_success() {
        return Some(format!("discovery {} answered {}", d.url, resp.status()));
    }
    let doc: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => return Some(format!("discovery {} is not JSON: {e}", d.url)),
    };
    match doc["issuer"].as_str() {
        Some(i) if i == d.issuer => None,
        Some(i) => Some(format!(
            "discovery names issuer {i}, the config says {}",
            d.issuer
        )),
        None => Some(format!("discovery {} names no issuer", d.url)),
    }
}

/// The first reason any authenticator of the config would not initialise.
pub async fn config_blocker(config_yaml: &str) -> Option<String> {
    let list = match discoveries(config_yaml) {
        Ok(l) => l,
        Err(e) => return Some(e),
    };
    for d in &list {
        if let Some(why) = blocker(d).await {
            return Some(why);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_follow_the_api_server_rules() {
        let cfg = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: https://localhost:8443/oauth2/openid/k8s/\n    audiences: [k8s]\n    certificateAuthority: PEM\n- issuer:\n    url: https://idp.example\n    discoveryURL: https://internal/.well-known/openid-configuration\n    audiences: [k8s]\n";
        let d = discoveries(cfg).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].url,
            "https://localhost:8443/oauth2/openid/k8s/.well-known/openid-configuration"
        );
        assert_eq!(d[0].issuer, "https://localhost:8443/oauth2/openid/k8s/");
        assert_eq!(d[0].ca_pem.as_deref(), Some("PEM"));
        assert_eq!(
            d[1].url,
            "https://internal/.well-known/openid-configuration"
        );
        assert_eq!(d[1].ca_pem, None);
        assert!(discoveries("jwt: []\n").unwrap().is_empty());
        assert!(discoveries("jwt:\n- issuer: {}\n").is_err());
    }
}
