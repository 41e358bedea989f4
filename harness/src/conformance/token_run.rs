//! The token oracle (I/O): a real kube-apiserver (the local backend's etcd and API server)
//! trusts an issuer this run serves over TLS from the lab CA, with the configuration of
//! `tokens::config`; each token of `tokens::cases` goes to the API server
//! (`kubectl auth whoami`, the 401 cause from its log) and to `explain` with the same
//! configuration, and the two answers are judged by `explain::agree`, the judge of
//! `e2e --explain-check`. The API server decides; the issuer only publishes a key.

use super::Target;
use super::tokens::{self, KID, Signer, TokenCase};
use crate::check::expect::{observe_401, wait_oidc_ready};
use crate::check::judge::Judgement;
use crate::check::kubectl::Verdict as Seen;
use crate::cluster::ClusterBackend;
use crate::cluster::kubeconfig;
use crate::cluster::local::LocalControlPlane;
use crate::explain;
use crate::render::K8sVersion;
use crate::render::plan::AuthSetup;
use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct TokenResult {
    pub case: TokenCase,
    pub judgement: Judgement,
    /// What the API server did: `allowed` or `Unauthorized (401)` with its log's error.
    pub apiserver: String,
}

pub struct TokenReport {
    pub target: Target,
    pub results: Vec<TokenResult>,
    pub elapsed: Duration,
}

/// Run every token case against `target` (its control plane: `bins`).
pub async fn run(
    target: &Target,
    bins: &crate::tools::ControlPlaneBins,
    progress: impl Fn(usize, usize),
) -> Result<TokenReport> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("kanidm-lab-tokens-")
        .tempdir()
        .context("creating a working directory")?;
    let pki = crate::pki::generate_local(&dir.path().join("pki"))?;
    let key = rcgen::KeyPair::generate().context("generating the issuer's key")?;
    let stranger = rcgen::KeyPair::generate().context("generating a second key")?;
    let issuer = Issuer::start(&pki, &key).await?;
    let (iss_a, iss_b) = (issuer.url("a"), issuer.url("b"));
    let version = K8sVersion {
        minor: target.minor,
    };
    let api_version = version
        .authn_config_api_version()
        .context("this minor has no AuthenticationConfiguration")?;
    let config = tokens::config(api_version, &iss_a, &iss_b, &pki.ca_pem);
    let config_path = dir.path().join("authentication-config.yaml");
    std::fs::write(&config_path, &config)?;
    let mut cp = LocalControlPlane::start(&dir.path().join("cp"), &pki, bins).await?;
    let outcome = judge_all(
        &mut cp,
        &config,
        &config_path,
        &key,
        &stranger,
        &iss_a,
        &iss_b,
        version,
        dir.path(),
        progress,
    )
    .await;
    cp.shutdown().await;
    issuer.stop();
    Ok(TokenReport {
        target: target.clone(),
        results: outcome?,
        elapsed: started.elapsed(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn judge_all(
    cp: &mut LocalControlPlane,
    config: &str,
    config_path: &std::path::Path,
    key: &rcgen::KeyPair,
    stranger: &rcgen::KeyPair,
    iss_a: &str,
    iss_b: &str,
    version: K8sVersion,
    dir: &std::path::Path,
    progress: impl Fn(usize, usize),
) -> Result<Vec<TokenResult>> {
    cp.configure_auth(&AuthSetup::Structured {
        config_yaml: config.to_string(),
    })
    .await?;
    let now = unix_now();
    let cases = tokens::cases(iss_a, iss_b, now);
    let kubeconfig_path = dir.join("token.kubeconfig");
    let write = |token: &str| {
        kubeconfig::write(
            &kubeconfig_path,
            cp.server_url(),
            &cp.server_ca_file(),
            "token",
            kubeconfig::UserAuth::Token(token),
        )
    };
    // The authenticators initialise (discovery) before any verdict counts.
    write(&sign(&cases[0], key, stranger)?)?;
    wait_oidc_ready(
        cp,
        &crate::check::kubectl::Kubeconfig::file(&kubeconfig_path, dir.join("kubectl-cache")),
    )
    .await?;
    let total = cases.len();
    let mut out = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let token = sign(&case, key, stranger)?;
        write(&token)?;
        let seen = observe_401(
            cp,
            &crate::check::kubectl::Kubeconfig::file(&kubeconfig_path, dir.join("kubectl-cache")),
        )
        .await?;
        let apiserver = match seen.run.verdict {
            Seen::Unauthorized => format!(
                "Unauthorized (401): {}",
                seen.err.clone().unwrap_or_else(|| "no log line".into())
            ),
            ref v => format!("{v:?}"),
        };
        let req = explain::Request {
            token: explain::TokenSource::Raw(token),
            auth: explain::AuthSource::ConfigFile(config_path.to_path_buf()),
            ca: None,
            k8s: version,
            offline: false,
        };
        let judgement = match explain::explain(&req).await {
            Ok(e) => explain::agree::explain_agrees(&seen.run, seen.cause, &e.explanation.verdict),
            // A token explain cannot read at all: the API server must refuse it too.
            Err(e) if seen.run.verdict == Seen::Unauthorized => {
                Judgement::pass(format!("both refuse it; explain: {}", e.0))
            }
            Err(e) => explain::agree::explain_refused(&e.0),
        };
        out.push(TokenResult {
            case,
            judgement,
            apiserver,
        });
        progress(i + 1, total);
    }
    Ok(out)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The compact JWT of a case.
fn sign(case: &TokenCase, key: &rcgen::KeyPair, stranger: &rcgen::KeyPair) -> Result<String> {
    let message = format!(
        "{}.{}",
        B64.encode(case.header.as_bytes()),
        B64.encode(case.payload.as_bytes())
    );
    let es256 = |k: &rcgen::KeyPair| {
        jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_ec_der(&k.serialize_der()),
            jsonwebtoken::Algorithm::ES256,
        )
        .context("signing a token")
    };
    let signature = match case.signer {
        Signer::Issuer => es256(key)?,
        Signer::Stranger => es256(stranger)?,
        Signer::Garbage => B64.encode([7u8; 64]),
        Signer::Empty => String::new(),
    };
    Ok(format!("{message}.{signature}"))
}

/// A TLS issuer on 127.0.0.1 (as `localhost`, the lab CA's serving certificate) that serves
/// two issuers' discovery documents and one JWKS.
struct Issuer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Issuer {
    async fn start(pki: &crate::pki::LabPki, key: &rcgen::KeyPair) -> Result<Issuer> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.kanidm_chain)
            .context("reading the serving certificate")?
            .collect::<Result<_, _>>()
            .context("reading the serving certificate")?;
        let private =
            PrivateKeyDer::from_pem_file(&pki.kanidm_key).context("reading the serving key")?;
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .context("the serving certificate")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let raw = key.public_key_raw();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
            "x": B64.encode(raw.get(1..33).unwrap_or_default()),
            "y": B64.encode(raw.get(33..65).unwrap_or_default()),
        }]})
        .to_string();
        let base = format!("https://localhost:{port}");
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors or similar: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, jwks, base) = (acceptor.clone(), jwks.clone(), base.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        serve(acceptor, tcp, &jwks, &base),
                    )
                    .await;
                });
            }
        });
        Ok(Issuer { port, task })
    }

    fn url(&self, name: &str) -> String {
        format!("https://localhost:{}/{name}", self.port)
    }

    fn stop(self) {
        self.task.abort();
    }
}

async fn serve(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    jwks: &str,
    base: &str,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = acceptor.accept(tcp).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path
        .strip_suffix("/.well-known/openid-configuration")
        .map(str::to_string)
    {
        Some(p) if p == "/a" || p == "/b" => {
            let iss = format!("{base}{p}");
            (
                "200 OK",
                serde_json::json!({
                    "issuer": iss,
                    "jwks_uri": format!("{base}/jwks"),
                    "authorization_endpoint": format!("{iss}/authorize"),
                    "token_endpoint": format!("{iss}/token"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                })
                .to_string(),
            )
        }
        _ if path == "/jwks" => ("200 OK", jwks.to_string()),
        _ => ("404 Not Found", "{}".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(response.as_bytes()).await?;
    tls.shutdown().await?;
    Ok(())
}

/// The report: each disagreement, then a summary line.
pub fn render(report: &TokenReport, all: bool) -> String {
    use crate::input_file::printable;
    use std::fmt::Write as _;
    let mut out = String::new();
    for r in &report.results {
        if r.judgement.passed && !all {
            continue;
        }
        let _ = writeln!(
            out,
            "{}  token {}\n    kube-apiserver: {}\n    explain:        {}{}",
            if r.judgement.passed {
                "agree   "
            } else {
                "DISAGREE"
            },
            r.case.name,
            printable(&r.apiserver),
            printable(&r.judgement.actual),
            r.judgement
                .detail
                .as_deref()
                .map(|d| format!("\n    why:            {}", printable(d)))
                .unwrap_or_default()
        );
    }
    let bad = report
        .results
        .iter()
        .filter(|r| !r.judgement.passed)
        .count();
    let accepted = report
        .results
        .iter()
        .filter(|r| !r.apiserver.starts_with("Unauthorized"))
        .count();
    let _ = writeln!(
        out,
        "kube-apiserver {} tokens: {} tokens ({accepted} accepted by the API server, {} refused), {} agree, {bad} disagree; {:.1} s",
        report.target.version,
        report.results.len(),
        report.results.len() - accepted,
        report.results.len() - bad,
        report.elapsed.as_secs_f64()
    );
    out
}
