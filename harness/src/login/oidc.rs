//! The kubelogin side of the flow: discovery, PKCE S256 + state + nonce, the localhost
//! redirect listener, the code exchange, and id_token verification against the JWKS.

use anyhow::{Context, Result, anyhow, bail};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use oauth2::{CsrfToken, PkceCodeChallenge, PkceCodeVerifier};
use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery> {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let d: Discovery = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("OIDC discovery at {url}"))?
        .json()
        .await
        .with_context(|| format!("parsing discovery from {url}"))?;
    if d.issuer != issuer {
        bail!(
            "discovery at {url} says issuer {}, expected {issuer}",
            d.issuer
        );
    }
    Ok(d)
}

/// One prepared authorization request (kept until the redirect arrives).
pub struct AuthRequest {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub verifier: PkceCodeVerifier,
    pub redirect_uri: String,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

pub fn auth_request(
    d: &Discovery,
    client_id: &str,
    scopes: &[String],
    redirect_uri: &str,
) -> Result<AuthRequest> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = CsrfToken::new_random().secret().clone();
    let nonce = CsrfToken::new_random().secret().clone();
    let mut url = url::Url::parse(&d.authorization_endpoint).context("authorization_endpoint")?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", challenge.method().as_str());
    Ok(AuthRequest {
        url,
        state,
        nonce,
        verifier,
        redirect_uri: redirect_uri.to_string(),
    })
}

/// The localhost listener kubelogin runs: answers one redirect with the code.
/// How long a login waits for a fixed redirect port another process holds.
const REDIRECT_PORT_WAIT: Duration = Duration::from_secs(60);

pub struct RedirectListener {
    listener: TcpListener,
    pub port: u16,
    pub path: String,
}

impl RedirectListener {
    pub async fn bind(port: Option<u16>, path: &str) -> Result<RedirectListener> {
        // A fixed port (post 2 registers http://localhost:8000) may be held by another run's
        // login for a moment, as with two kubelogins at once: wait for it, within a bound.
        let want = port.unwrap_or(0);
        let listener = crate::wait::until(
            REDIRECT_PORT_WAIT,
            Duration::from_millis(100),
            || async move {
                match TcpListener::bind(("127.0.0.1", want)).await {
                    Ok(l) => Ok(Some(l)),
                    Err(e) if want != 0 && e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
                    Err(e) => Err(anyhow::Error::new(e).context(format!(
                        "binding the redirect listener on 127.0.0.1:{want}"
                    ))),
                }
            },
            |after| {
                anyhow::anyhow!(
                    "the redirect port 127.0.0.1:{want} stayed in use for {} s\n  help: another program (or a kubelogin) listens on it; the scenario's client registers this port",
                    after.as_secs()
                )
            },
        )
        .await?;
        let port = listener.local_addr()?.port();
        Ok(RedirectListener {
            listener,
            port,
            path: path.to_string(),
        })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://localhost:{}{}", self.port, self.path)
    }

    /// Wait for the browser's redirect carrying `state`; return (code, state). Anything else
    /// that reaches the listener (a stray request, a port scan, a silent connection, a
    /// forged `error=`) is answered and ignored, never taken for the login's answer.
    pub async fn accept(&self, state: &str, timeout: Duration) -> Result<(String, String)> {
        let fut = async {
            loop {
                let Ok((mut sock, _)) = self.listener.accept().await else {
                    continue;
                };
                let Ok(Ok(target)) =
                    tokio::time::timeout(Duration::from_secs(5), read_request_target(&mut sock))
                        .await
                else {
                    continue;
                };
                match self.judge_redirect(&target, state) {
                    Redirect::Stray(status) => {
                        let _ = sock.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes()).await;
                    }
                    answer => {
                        let body = "<html><head><title>kanidm-k8s-lab</title></head><body><h1 id=\"lab-done\">Logged in. You can close this window.</h1></body></html>";
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                        return match answer {
                            Redirect::Code(code) => Ok((code, state.to_string())),
                            Redirect::Error(e) => {
                                Err(anyhow!("the authorization server answered {e}"))
                            }
                            Redirect::Stray(_) => unreachable!("handled above"),
                        };
                    }
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("no redirect to the localhost listener within {timeout:?}"))?
    }

    /// What one request to the listener is (pure).
    fn judge_redirect(&self, target: &str, state: &str) -> Redirect {
        let Ok(url) = url::Url::parse(&format!("http://localhost{target}")) else {
            return Redirect::Stray("400 Bad Request");
        };
        if url.path() != self.path {
            return Redirect::Stray("404 Not Found");
        }
        let get = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        if get("state").as_deref() != Some(state) {
            return Redirect::Stray("400 Bad Request");
        }
        match (get("code"), get("error")) {
            (_, Some(err)) => Redirect::Error(format!(
                "error={err} ({})",
                get("error_description").unwrap_or_default()
            )),
            (Some(code), None) => Redirect::Code(code),
            (None, None) => Redirect::Stray("400 Bad Request"),
        }
    }
}

enum Redirect {
    Code(String),
    Error(String),
    Stray(&'static str),
}

/// The request target of an HTTP/1 request line (`GET /callback?code=… HTTP/1.1`).
async fn read_request_target(sock: &mut tokio::net::TcpStream) -> Result<String> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        let got = sock.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
        if buf[..n].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let req = String::from_utf8_lossy(&buf[..n]);
    req.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("not an HTTP request"))
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

/// A verified id_token and what we read from it.
#[derive(Clone)]
pub struct VerifiedToken {
    pub id_token: String,
    pub alg: String,
    pub claims: serde_json::Value,
    pub expires_at: u64,
    /// Set when kubelogin obtained the token: its exec block and cache.
    pub kubelogin: Option<std::sync::Arc<super::exec_block::KubeloginCred>>,
}

impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("alg", &self.alg)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub async fn exchange_and_verify(
    http: &reqwest::Client,
    d: &Discovery,
    client_id: &str,
    req: AuthRequest,
    code: &str,
    state: &str,
) -> Result<VerifiedToken> {
    if state != req.state {
        bail!("state mismatch on the redirect: possible cross-site request, refusing the code");
    }
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", &req.redirect_uri),
        ("client_id", client_id),
        ("code_verifier", req.verifier.secret()),
    ];
    let resp = http
        .post(&d.token_endpoint)
        .form(&form)
        .send()
        .await
        .context("token request")?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!("token endpoint answered {status}: {body}");
    }
    let t: TokenResponse = resp.json().await.context("parsing the token response")?;
    let id_token = t
        .id_token
        .ok_or_else(|| anyhow!("no id_token in the token response: was `openid` granted?"))?;
    let jwks = fetch_jwks(http, d).await?;
    verify(&id_token, &jwks, &d.issuer, client_id, Some(&req.nonce))
}

/// The issuer's signing keys.
async fn fetch_jwks(http: &reqwest::Client, d: &Discovery) -> Result<JwkSet> {
    http.get(&d.jwks_uri)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("fetching the JWKS")?
        .json()
        .await
        .context("parsing the JWKS")
}

/// A token someone else obtained (kubelogin), verified against the issuer's discovery and
/// JWKS like our own.
pub async fn verify_from_issuer(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    id_token: &str,
) -> Result<VerifiedToken> {
    let d = discover(http, issuer).await?;
    let jwks = fetch_jwks(http, &d).await?;
    verify(id_token, &jwks, &d.issuer, client_id, None)
}

/// Verify signature (ES256 or RS256), issuer, audience, expiry and nonce.
pub fn verify(
    id_token: &str,
    jwks: &JwkSet,
    issuer: &str,
    audience: &str,
    nonce: Option<&str>,
) -> Result<VerifiedToken> {
    let header = decode_header(id_token).context("id_token header")?;
    if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256) {
        bail!(
            "id_token signed with {:?}; Kanidm signs ES256 (or RS256 with legacy crypto)",
            header.alg
        );
    }
    let jwk = match &header.kid {
        Some(kid) => jwks
            .find(kid)
            .ok_or_else(|| anyhow!("no key {kid} in the JWKS"))?,
        None => jwks.keys.first().ok_or_else(|| anyhow!("empty JWKS"))?,
    };
    let key = DecodingKey::from_jwk(jwk).context("JWKS key")?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = decode::<serde_json::Value>(id_token, &key, &v).context("id_token verification")?;
    if let Some(n) = nonce
        && data.claims["nonce"].as_str() != Some(n)
    {
        bail!("id_token nonce does not match the request");
    }
    let expires_at = data.claims["exp"].as_u64().unwrap_or(0);
    Ok(VerifiedToken {
        id_token: id_token.to_string(),
        alg: format!("{:?}", header.alg),
        claims: data.claims,
        expires_at,
        kubelogin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn send(port: u16, request: &str) {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s.write_all(request.as_bytes()).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink)).await;
        }
    }

    #[tokio::test]
    async fn stray_requests_never_end_the_login() {
        let l = RedirectListener::bind(None, "/callback").await.unwrap();
        let port = l.port;
        let accept = tokio::spawn(async move { l.accept("s1", Duration::from_secs(20)).await });
        // A connection that never speaks must not block the listener.
        let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        for stray in [
            "garbage\r\n\r\n",
            "GET /favicon.ico HTTP/1.1\r\n\r\n",
            "GET /callback HTTP/1.1\r\n\r\n",
            "GET /callback?code=evil&state=other HTTP/1.1\r\n\r\n",
            "GET /callback?error=access_denied&state=forged HTTP/1.1\r\n\r\n",
        ] {
            send(port, stray).await;
        }
        send(port, "GET /callback?code=good&state=s1 HTTP/1.1\r\n\r\n").await;
        let (code, state) = accept.await.unwrap().unwrap();
        assert_eq!((code.as_str(), state.as_str()), ("good", "s1"));
    }

    #[tokio::test]
    async fn the_servers_own_error_for_our_state_is_the_answer() {
        let l = RedirectListener::bind(None, "/cb").await.unwrap();
        let port = l.port;
        let accept = tokio::spawn(async move { l.accept("s2", Duration::from_secs(20)).await });
        send(
            port,
            "GET /cb?error=access_denied&error_description=no&state=s2 HTTP/1.1\r\n\r\n",
        )
        .await;
        let err = accept.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("error=access_denied (no)"), "{err}");
    }
}
