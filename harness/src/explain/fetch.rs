//! The network half of `explain`: the issuer's discovery document and JWKS, fetched as the
//! API server fetches them (TLS verified against the authenticator's CA, or the system roots
//! when it names none), with a deadline. Errors are worded as the API server logs them.

use super::checks::Discovery;
use super::config::Authenticator;
use jsonwebtoken::jwk::JwkSet;
use std::time::Duration;

const FETCH_DEADLINE: Duration = Duration::from_secs(10);

fn client(a: &Authenticator) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(FETCH_DEADLINE);
    if let Some(pem) = &a.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("the CA ({}) is not PEM: {e}", a.ca_origin))?;
        b = b.tls_certs_only(certs);
    }
    b.build()
        .map_err(|e| format!("building an HTTPS client: {e}"))
}

/// Go's wording of a failed GET: `Get "<url>": <reason>`, with certificate problems as
/// `tls: failed to verify certificate: x509: …` (what `check::cause` reads as an untrusted CA).
fn go_get_error(url: &str, e: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    let text = chain.join(": ");
    let lower = text.to_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        let reason = chain.last().cloned().unwrap_or_default();
        return format!("Get {url:?}: tls: failed to verify certificate: x509: {reason}");
    }
    if e.is_timeout() {
        return format!(
            "Get {url:?}: context deadline exceeded (no answer within {} s)",
            FETCH_DEADLINE.as_secs()
        );
    }
    if lower.contains("connection refused") {
        return format!("Get {url:?}: dial tcp: connect: connection refused");
    }
    format!("Get {url:?}: {}", chain.last().cloned().unwrap_or(text))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| go_get_error(url, &e))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    if !status.is_success() {
        let snippet: String = body.chars().take(200).collect();
        return Err(format!("{status}: {snippet}"));
    }
    serde_json::from_str(&body)
        .map_err(|e| format!("oidc: failed to decode provider discovery object: {e}"))
}

/// Discovery for one authenticator, then (if it initialised) its JWKS.
pub async fn discover(a: &Authenticator) -> Discovery {
    let http = match client(a) {
        Ok(h) => h,
        Err(e) => return Discovery::Failed(e),
    };
    let url = a.discovery_url.clone().unwrap_or_else(|| {
        format!(
            "{}/.well-known/openid-configuration",
            a.issuer_url.trim_end_matches('/')
        )
    });
    let doc = match get_json(&http, &url).await {
        Ok(d) => d,
        Err(e) => return Discovery::Failed(e),
    };
    let issuer = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
    if issuer != a.issuer_url {
        return Discovery::Failed(format!(
            "oidc: issuer did not match the issuer returned by provider, expected {:?} got {issuer:?}",
            a.issuer_url
        ));
    }
    let Some(jwks_uri) = doc.get("jwks_uri").and_then(|v| v.as_str()) else {
        return Discovery::Failed(format!("{url} has no jwks_uri"));
    };
    let jwks = match get_json(&http, jwks_uri).await {
        Ok(v) => serde_json::from_value::<JwkSet>(v)
            .map_err(|e| format!("oidc: failed to decode keys: {e}")),
        Err(e) => Err(e),
    };
    Discovery::Ok { url, jwks }
}
