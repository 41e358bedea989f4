//! A tiny OIDC issuer that imitates Kanidm's login pages (test double for browser tests
//! that must run without kanidmd, e.g. in CI). Not used by the product.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
struct Flow {
    params: HashMap<String, String>,
    user: String,
    codes: HashMap<String, (String, String, String)>, // code -> (challenge, nonce, user)
    consented: bool,
}

pub struct FakeIssuer {
    pub issuer: String,
    pub origin: String,
    pub password: String,
}

fn page(body: &str) -> String {
    format!("<!doctype html><html><head><title>Fake</title></head><body>{body}</body></html>")
}

fn form(action: &str, inner: &str) -> String {
    format!(
        "<form id=\"login\" action=\"{action}\" method=\"post\">{inner}<button type=\"submit\" class=\"btn\">Submit</button></form>"
    )
}

fn parse_query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

impl FakeIssuer {
    /// Start on 127.0.0.1 with the given serving chain/key (PEM); returns once listening.
    pub async fn start(chain_pem: &str, key_pem: &str) -> FakeIssuer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let origin = format!("https://localhost:{port}");
        let issuer = format!("{origin}/oauth2/openid/fake");
        let signing = rcgen::KeyPair::generate().unwrap();
        let raw = signing.public_key_raw().to_vec(); // 0x04 || X || Y
        let jwk = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "fake-1",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}]});
        let enc =
            jsonwebtoken::EncodingKey::from_ec_pem(signing.serialize_pem().as_bytes()).unwrap();
        let state = Arc::new(Mutex::new(Flow::default()));
        let password = "correct horse battery staple".to_string();
        let (iss, org, pw) = (issuer.clone(), origin.clone(), password.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (state, iss, org, pw, jwk, enc) = (
                    state.clone(),
                    iss.clone(),
                    org.clone(),
                    pw.clone(),
                    jwk.clone(),
                    enc.clone(),
                );
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 65536];
                    let mut n = 0;
                    // Read headers and body (Content-Length).
                    loop {
                        let Ok(r) = tls.read(&mut buf[n..]).await else {
                            return;
                        };
                        if r == 0 {
                            return;
                        }
                        n += r;
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        if let Some(h) = text.find("\r\n\r\n") {
                            let len = text
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if n >= h + 4 + len {
                                break;
                            }
                        }
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let target = parts.next().unwrap_or("/").to_string();
                    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                    let form_data = parse_query(body);
                    let resp = route(
                        &method, path, query, &form_data, &state, &iss, &org, &pw, &jwk, &enc,
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        FakeIssuer {
            issuer,
            origin,
            password,
        }
    }
}

fn ok(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn see_other(location: &str) -> String {
    format!(
        "HTTP/1.1 303 See Other\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

#[allow(clippy::too_many_arguments)]
fn route(
    method: &str,
    path: &str,
    query: &str,
    form_data: &HashMap<String, String>,
    state: &Mutex<Flow>,
    issuer: &str,
    origin: &str,
    password: &str,
    jwk: &serde_json::Value,
    enc: &jsonwebtoken::EncodingKey,
) -> String {
    let mut st = state.lock().unwrap();
    match (method, path) {
        ("GET", "/oauth2/openid/fake/.well-known/openid-configuration") => ok(
            "application/json",
            &serde_json::json!({"issuer": issuer, "authorization_endpoint": format!("{origin}/ui/oauth2"),
                "token_endpoint": format!("{origin}/oauth2/token"), "jwks_uri": format!("{issuer}/public_key.jwk"),
                "id_token_signing_alg_values_supported": ["ES256"], "code_challenge_methods_supported": ["S256"]})
            .to_string(),
        ),
        ("GET", "/oauth2/openid/fake/public_key.jwk") => ok("application/json", &jwk.to_string()),
        ("GET", "/ui/oauth2") => {
            st.params = parse_query(query);
            ok("text/html", &page(&form("/ui/login/begin", "<input id=\"username\" name=\"username\" type=\"text\"><input class=\"d-none\" id=\"password\" name=\"password\">")))
        }
        ("POST", "/ui/login/begin") => {
            st.user = form_data.get("username").cloned().unwrap_or_default();
            ok("text/html", &page(&form("/ui/login/pw", "<input id=\"password\" name=\"password\" type=\"password\">")))
        }
        ("POST", "/ui/login/pw") => {
            if form_data.get("password").map(String::as_str) != Some(password) {
                return ok("text/html", &page("<h3>Login Failed</h3><p>Reason: bad password</p>"));
            }
            if st.user == "outsider" {
                return ok("text/html", &page("<h2>Access Denied</h2>"));
            }
            if st.consented {
                return finish(&mut st);
            }
            ok("text/html", &page("<h2>Consent to Proceed to Fake</h2><form id=\"login\" action=\"/ui/oauth2/consent\" method=\"post\"><button autofocus class=\"btn\" type=\"submit\">Proceed</button></form>"))
        }
        ("POST", "/ui/oauth2/consent") => {
            st.consented = true;
            finish(&mut st)
        }
        ("POST", "/oauth2/token") => {
            let code = form_data.get("code").cloned().unwrap_or_default();
            let Some((challenge, nonce, user)) = st.codes.remove(&code) else {
                return "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into();
            };
            let verifier = form_data.get("code_verifier").cloned().unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into();
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let claims = serde_json::json!({"iss": issuer, "aud": "fake", "sub": format!("uuid-of-{user}"), "exp": now + 900,
                "iat": now, "nonce": nonce, "preferred_username": format!("{user}@localhost")});
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some("fake-1".into());
            let id_token = jsonwebtoken::encode(&header, &claims, enc).unwrap();
            ok("application/json", &serde_json::json!({"access_token": "x", "token_type": "Bearer", "id_token": id_token}).to_string())
        }
        _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
    }
}

fn finish(st: &mut Flow) -> String {
    let code = format!("code-{}", st.codes.len() + 1);
    let p = st.params.clone();
    st.codes.insert(
        code.clone(),
        (
            p["code_challenge"].clone(),
            p.get("nonce").cloned().unwrap_or_default(),
            st.user.clone(),
        ),
    );
    see_other(&format!(
        "{}?code={code}&state={}",
        p["redirect_uri"], p["state"]
    ))
}
