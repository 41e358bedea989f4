//! `cargo xtask explain`: why would the API server reject (or accept) this token?
//!
//! The input is a token and the API server's authentication as the user has it. `config`
//! turns an `AuthenticationConfiguration`, `--oidc-*` flags or a static pod manifest into
//! authenticators (refusing what the API server would refuse), `fetch` asks the issuer for
//! discovery and keys (unless offline), and `checks` walks the API server's checks in its
//! order — a pure function whose failures are worded as the API server logs them, so the
//! cause and hint come from `check::cause`, the same words as the e2e report.

pub mod agree;
pub mod cel;
pub mod cel_types;
pub mod checks;
pub mod config;
pub mod fetch;
mod flags;
pub mod go_url;
mod mapping;
pub mod source;
mod steps;
pub mod token;
pub mod validate;

use crate::render::K8sVersion;
use checks::{Explanation, Status, Verdict};
pub use source::AuthSource;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Input that cannot be used (exit 2): a token that is not a JWT, a config the API server
/// would refuse, a file that cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Configuration files are small; this is far past any real one.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) fn read_text(path: &Path) -> Result<String, InputError> {
    if path == Path::new("-") {
        return token::read_input(path);
    }
    crate::input_file::read_text(path, MAX_CONFIG_BYTES, "the file").map_err(|e| InputError(e.0))
}

/// Where the token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A file or `-`: a bare JWT, an ExecCredential, or a kubelogin token-cache entry.
    File(PathBuf),
    /// A kubeconfig's user (token, tokenFile, or exec plugin), current context unless named.
    Kubeconfig {
        path: PathBuf,
        context: Option<String>,
    },
    /// Already in hand (the harness's own tokens).
    Raw(String),
}

pub struct Request {
    pub token: TokenSource,
    pub auth: AuthSource,
    /// A CA file that replaces the authenticators' own (and stands in for an `--oidc-ca-file`
    /// that is only on the control-plane node).
    pub ca: Option<PathBuf>,
    pub k8s: K8sVersion,
    /// Skip discovery and the signature (no network).
    pub offline: bool,
}

pub struct Explained {
    pub token: token::Jwt,
    pub authenticators: Vec<config::Authenticator>,
    pub explanation: Explanation,
    pub now: i64,
}

pub async fn explain(req: &Request) -> Result<Explained, InputError> {
    let raw = match &req.token {
        TokenSource::File(p) => token::extract(&token::read_input(p)?)?,
        TokenSource::Kubeconfig { path, context } => {
            token::from_kubeconfig(path, context.as_deref(), None).await?
        }
        TokenSource::Raw(t) => t.trim().to_string(),
    };
    let jwt = token::decode(&raw)?;
    let ca = match &req.ca {
        Some(p) => Some(read_text(p)?),
        None => None,
    };
    let authenticators = source::load(&req.auth, req.k8s, ca.as_deref())?;
    let mut net = Vec::new();
    for a in &authenticators {
        // Discovery only matters to an authenticator the token's issuer reaches.
        let relevant = jwt.claim_str("iss") == Some(a.issuer_url.as_str());
        net.push(if req.offline || !relevant {
            checks::Discovery::NotChecked
        } else {
            fetch::discover(a).await
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let explanation = checks::explain(&jwt, &authenticators, &net, now);
    Ok(Explained {
        token: jwt,
        authenticators,
        explanation,
        now,
    })
}

/// 0 = accepted, 1 = rejected (401), 2 = cannot tell.
pub fn exit_code(v: &Verdict) -> i32 {
    match v {
        Verdict::Accepted { .. } => 0,
        Verdict::Rejected { .. } => 1,
        Verdict::Undetermined(_) => 2,
    }
}

/// One line: the verdict in the run report's words.
pub fn verdict_line(v: &Verdict) -> String {
    match v {
        Verdict::Accepted { user, by } => format!(
            "accepted by {by} as {:?}, groups [{}]",
            user.username,
            user.groups.join(", ")
        ),
        Verdict::Rejected { cause: Some(c), .. } => format!("Unauthorized (401), cause {c}"),
        Verdict::Rejected { cause: None, .. } => "Unauthorized (401), no named cause".into(),
        Verdict::Undetermined(why) => format!("cannot tell: {why}"),
    }
}

/// The whole explanation as text. Never prints the token itself.
pub fn render(e: &Explained, k8s: K8sVersion) -> String {
    let mut out = String::new();
    let t = &e.token;
    let claim = |n: &str| {
        t.claims
            .get(n)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(none)".into())
    };
    let _ = writeln!(
        out,
        "token: alg {}, kid {}, iss {}, aud {}, sub {}, preferred_username {}",
        t.alg,
        t.kid.as_deref().unwrap_or("(none)"),
        claim("iss"),
        claim("aud"),
        claim("sub"),
        claim("preferred_username")
    );
    let _ = writeln!(
        out,
        "checked as Kubernetes {k8s}'s kube-apiserver would, {} authenticator(s), clock {}",
        e.authenticators.len(),
        checks::go_time(e.now)
    );
    for s in &e.explanation.sections {
        let _ = writeln!(out, "\nauthenticator {} (issuer {})", s.label, s.issuer);
        for (i, step) in s.steps.iter().enumerate() {
            let mark = match step.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
                Status::Unknown => "  ? ",
            };
            let _ = writeln!(
                out,
                "  {:>2}. {mark}  {:<11} {}",
                i + 1,
                step.name,
                step.seen
            );
        }
    }
    let skipped: Vec<&str> = e
        .authenticators
        .iter()
        .skip(e.explanation.sections.len())
        .map(|a| a.label.as_str())
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n(not reached: {}; an earlier authenticator decided)",
            skipped.join(", ")
        );
    }
    let _ = writeln!(out, "\nverdict: {}", verdict_line(&e.explanation.verdict));
    match &e.explanation.verdict {
        Verdict::Accepted { user, .. } => {
            if let Some(uid) = &user.uid {
                let _ = writeln!(out, "  uid: {uid}");
            }
            for (k, v) in &user.extra {
                let _ = writeln!(out, "  extra: {k} = [{}]", v.join(", "));
            }
            let _ = writeln!(
                out,
                "  RBAC decides the rest: bind the username or one of these groups"
            );
        }
        Verdict::Rejected {
            err, cause, caveat, ..
        } => {
            let _ = writeln!(out, "  the API server logs: err={err:?}");
            if let Some(c) = caveat {
                let _ = writeln!(out, "  but: {c}");
            }
            if let Some(c) = cause {
                let _ = writeln!(out, "  hint: {}", c.hint());
            }
            let _ = writeln!(
                out,
                "  kubectl only says: error: You must be logged in to the server (Unauthorized)"
            );
        }
        Verdict::Undetermined(_) => {}
    }
    // Values from the token and the configuration may hold control characters (a terminal
    // escape in a claim): every line is printed with them escaped.
    out.lines()
        .map(|l| crate::input_file::printable(l).into_owned() + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    //! Whatever bytes arrive as a token or a configuration, explain answers; it never panics.
    use super::*;

    /// A small deterministic generator (no dependency for a test loop).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as usize
        }
    }

    #[test]
    fn mutated_tokens_and_configs_never_panic() {
        let config = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n  - issuer: {url: \"https://x/oauth2/openid/k8s\", audiences: [k8s]}\n    claimValidationRules:\n      - {expression: \"claims.groups.exists(g, g.startsWith('k8s')) && claims.?hd.orValue('') == ''\"}\n    claimMappings:\n      username: {expression: \"claims.sub.split('@')[0]\"}\n      groups: {expression: \"claims.groups.map(g, 'k:' + g)\"}\n";
        let claims = r#"{"iss":"https://x/oauth2/openid/k8s","aud":["k8s"],"sub":"a@b","exp":99999999999,"groups":["k8s_users"]}"#;
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256"}"#),
            b64(claims),
            b64("sig")
        );
        let alphabet: Vec<char> = "{}[]()'\"\\.:,?!=&|+-*/%<>_ \nabcxyz019@#$~`^\u{0}\u{7f}é"
            .chars()
            .collect();
        let mut rng = Lcg(42);
        let mutate = |s: &str, rng: &mut Lcg| -> String {
            let mut c: Vec<char> = s.chars().collect();
            for _ in 0..1 + rng.next() % 4 {
                let i = rng.next() % (c.len() + 1);
                match rng.next() % 3 {
                    0 if i < c.len() => {
                        c.remove(i);
                    }
                    1 if i < c.len() => c[i] = alphabet[rng.next() % alphabet.len()],
                    _ => c.insert(i, alphabet[rng.next() % alphabet.len()]),
                }
            }
            c.into_iter().collect()
        };
        let k8s: K8sVersion = "1.36".parse().unwrap_or(K8sVersion::DEFAULT);
        for _ in 0..3000 {
            let t = mutate(&token, &mut rng);
            let cfg = mutate(config, &mut rng);
            let auths = config::from_config(&cfg, "fuzz.yaml", k8s);
            if let (Ok(jwt), Ok(auths)) = (
                token::decode(&token::extract(&t).unwrap_or_default()),
                auths,
            ) {
                let _ = checks::explain(&jwt, &auths, &[], 0);
            }
            // Mutated claims through the mappings and rules.
            let c = mutate(claims, &mut rng);
            let t2 = format!("{}.{}.{}", b64(r#"{"alg":"ES256"}"#), b64(&c), b64("sig"));
            if let (Ok(jwt), Ok(auths)) = (
                token::decode(&t2),
                config::from_config(config, "c.yaml", k8s),
            ) {
                let _ = checks::explain(&jwt, &auths, &[], 0);
            }
        }
    }
}
