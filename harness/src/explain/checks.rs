//! The API server's checks of one bearer token, in its order, as a pure function: the
//! issuer gate, initialisation (discovery), go-oidc's verification (algorithm, signature,
//! audience, expiry, not-before) here, then Kubernetes' claim rules, claim mappings and
//! user rules (`mapping.rs`). Each failure is worded as the API server logs it, so the
//! cause comes from the same classifier the e2e report uses on real logs (`check::cause`).

use super::config::Authenticator;
pub use super::steps::{MappedUser, Outcome, Status, Step};
use super::steps::{Run, go_list};
use super::token::Jwt;
use crate::check::cause::{classify, init_failure_of};
use crate::scenario::cause::Cause;
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

/// What the network told us about one authenticator's issuer.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// `--offline`: nothing fetched.
    NotChecked,
    /// Discovery failed; the text is the API server's `initializing plugin` error.
    Failed(String),
    /// Discovery answered with the right issuer; the JWKS, or why it could not be fetched.
    Ok {
        url: String,
        jwks: Result<JwkSet, String>,
    },
}

#[derive(Debug, Clone)]
pub struct Section {
    pub label: String,
    pub issuer: String,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
    /// The discovery error, when the authenticator never initialised.
    pub init_failure: Option<String>,
    /// The verdict depends on state the API server keeps and we cannot see.
    pub caveat: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Accepted {
        user: MappedUser,
        by: String,
    },
    /// 401, with the `err="…"` text the API server would log and its cause; `caveat` says
    /// when the API server may still answer otherwise for a while (its cached keys).
    Rejected {
        err: String,
        cause: Option<Cause>,
        caveat: Option<String>,
        /// The issuer cannot be reached now: what an API server that initialised the
        /// authenticator earlier (and keeps the keys it fetched then) does with the token.
        /// Its signature is not checked here.
        if_initialised: Option<Box<Verdict>>,
    },
    Undetermined(String),
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub sections: Vec<Section>,
    pub verdict: Verdict,
}

/// Go's `time.Time` default format, UTC.
pub fn go_time(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .map(|t| format!("{t} +0000 UTC"))
        .unwrap_or_else(|| format!("unix {secs}"))
}

/// "in 14 min 3 s" / "2 min 5 s ago".
pub fn relative(delta: i64) -> String {
    let a = delta.unsigned_abs();
    let text = if a >= 3600 {
        format!("{} h {} min", a / 3600, (a % 3600) / 60)
    } else if a >= 60 {
        format!("{} min {} s", a / 60, a % 60)
    } else {
        format!("{a} s")
    };
    if delta >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Every authenticator's checks, then the union's verdict: the first that accepts wins;
/// otherwise the errors, aggregated as the API server logs them.
pub fn explain(token: &Jwt, auths: &[Authenticator], net: &[Discovery], now: i64) -> Explanation {
    let mut sections = Vec::new();
    let mut verdict = None;
    for (i, a) in auths.iter().enumerate() {
        let d = net.get(i).cloned().unwrap_or(Discovery::NotChecked);
        let s = check_one(token, a, &d, now);
        let decided = match &s.outcome {
            Outcome::Accepted(user) => Some(Verdict::Accepted {
                user: user.clone(),
                by: a.label.clone(),
            }),
            Outcome::Undetermined(why) => Some(Verdict::Undetermined(why.clone())),
            _ => None,
        };
        sections.push(s);
        if decided.is_some() {
            verdict = decided;
            break;
        }
    }
    let mut verdict = verdict.unwrap_or_else(|| rejected(&sections));
    // The issuer is unreachable now. kube-apiserver fails only if it started that way; one
    // that initialised before goes on with the keys it has: say what it would do.
    if let Verdict::Rejected {
        cause: Some(Cause::AuthenticatorNotInitialized),
        if_initialised,
        caveat,
        ..
    } = &mut verdict
    {
        let unreachable: Vec<Discovery> = net
            .iter()
            .map(|d| match d {
                Discovery::Failed(e) if is_unreachable(e) => Discovery::NotChecked,
                other => other.clone(),
            })
            .collect();
        if net
            .iter()
            .any(|d| matches!(d, Discovery::Failed(e) if is_unreachable(e)))
        {
            let alt = explain(token, auths, &unreachable, now).verdict;
            *caveat = Some(format!(
                "the issuer cannot be reached now. kube-apiserver answers this only if it started while the issuer was unreachable; one that initialised the authenticator before keeps the keys it fetched then, and for it: {} (signature not checked here)",
                super::verdict_line(&alt)
            ));
            *if_initialised = Some(Box::new(alt));
        }
    }
    Explanation { sections, verdict }
}

/// A discovery failure that says the issuer is down or unreachable (not one the API server
/// would also hit when it is up: TLS, a wrong issuer, a bad document).
pub fn is_unreachable(e: &str) -> bool {
    [
        "connection refused",
        "context deadline exceeded",
        "no such host",
        "connection reset",
        "network is unreachable",
    ]
    .iter()
    .any(|w| e.contains(w))
}

fn rejected(sections: &[Section]) -> Verdict {
    let errs: Vec<&str> = sections
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Error(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    let err = match errs.as_slice() {
        [] => "invalid bearer token".to_string(),
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    };
    let mut cause = classify(&err);
    if cause == Some(Cause::AuthenticatorNotInitialized)
        && let Some(init) = sections.iter().find_map(|s| s.init_failure.as_deref())
        && let Some((c, _)) = init_failure_of(&format!("initializing plugin: {init}"))
    {
        cause = Some(c);
    }
    let caveat = sections.iter().find_map(|s| s.caveat.clone());
    Verdict::Rejected {
        err,
        cause,
        caveat,
        if_initialised: None,
    }
}

fn check_one(token: &Jwt, a: &Authenticator, d: &Discovery, now: i64) -> Section {
    let mut r = Run::new();
    let mut init_failure = None;
    let outcome = steps(token, a, d, now, &mut r, &mut init_failure);
    Section {
        label: a.label.clone(),
        issuer: a.issuer_url.clone(),
        steps: r.steps,
        outcome,
        init_failure,
        caveat: r.caveat,
    }
}

fn steps(
    token: &Jwt,
    a: &Authenticator,
    d: &Discovery,
    now: i64,
    r: &mut Run,
    init_failure: &mut Option<String>,
) -> Outcome {
    // 1. The issuer gate: the unverified `iss`, byte for byte.
    let iss = token.claim_str("iss").unwrap_or("");
    if iss != a.issuer_url {
        let why = if iss.trim_end_matches('/') == a.issuer_url.trim_end_matches('/') {
            " (they differ only by a trailing slash)"
        } else {
            ""
        };
        r.push(
            "issuer",
            Status::Fail,
            format!(
                "token iss {iss:?} ≠ issuer {:?}{why}: this authenticator ignores the token",
                a.issuer_url
            ),
        );
        return Outcome::Declined;
    }
    r.pass("issuer", format!("token iss = issuer {iss:?}"));
    // 2. Initialised: discovery succeeded with this CA and the same issuer.
    let jwks = match d {
        Discovery::NotChecked => {
            r.skip("discovery", "not checked (--offline); assumed initialised");
            None
        }
        Discovery::Failed(e) => {
            *init_failure = Some(e.clone());
            return r.fail(
                "discovery",
                format!("{e} (CA: {})", a.ca_origin),
                "oidc: authenticator not initialized".into(),
            );
        }
        Discovery::Ok { url, jwks } => {
            r.pass(
                "discovery",
                format!(
                    "{url}: issuer matches; TLS verified against {}",
                    a.ca_origin
                ),
            );
            Some(jwks)
        }
    };
    // go-oidc parses the JWS first (go-jose): a header field of the wrong type is a malformed
    // token before anything else is looked at.
    if let Some(e) = malformed_header(token) {
        return r.fail(
            "header",
            format!("the header is not what go-jose decodes: {e}"),
            format!("oidc: verify token: oidc: malformed jwt: {e}"),
        );
    }
    // 3. go-oidc: the signing algorithm.
    if !a.signing_algs.contains(&token.alg) {
        let listed = go_list(&a.signing_algs);
        return r.fail(
            "algorithm",
            format!("{} not in {listed}", token.alg),
            format!(
                "oidc: verify token: oidc: id token signed with unsupported algorithm, expected {listed} got {:?}",
                token.alg
            ),
        );
    }
    r.pass(
        "algorithm",
        format!("{} in {}", token.alg, go_list(&a.signing_algs)),
    );
    // 4. The signature against the JWKS.
    match jwks {
        None => r.skip("signature", "not checked (--offline)"),
        Some(Err(e)) => {
            return r.fail(
                "signature",
                format!("the JWKS could not be fetched: {e}"),
                format!("oidc: verify token: failed to verify signature: fetching keys oidc: get keys failed: {e}"),
            );
        }
        // go-jose refuses to verify a token with critical header parameters.
        Some(Ok(_)) if token.header.contains_key("crit") => {
            return r.fail(
                "signature",
                "the header has `crit`, which go-jose does not verify",
                "oidc: verify token: failed to verify signature: failed to verify id token signature".into(),
            );
        }
        Some(Ok(set)) => match verify_signature(token, set) {
            Ok(seen) => r.pass("signature", seen),
            Err(SigError::Unsupported(why)) => return r.unknown("signature", why),
            Err(SigError::NoMatch(seen, kid_gone)) => {
                if kid_gone {
                    r.caveat = Some(KEY_CACHE_CAVEAT.into());
                }
                return r.fail(
                    "signature",
                    seen,
                    "oidc: verify token: failed to verify signature: failed to verify id token signature".into(),
                );
            }
        },
    }
    // go-oidc decodes the standard claims into typed fields after the signature.
    if let Some(e) = undecodable_claims(token) {
        return r.fail(
            "claims",
            format!("a standard claim has a type go-oidc cannot decode: {e}"),
            format!("oidc: verify token: oidc: failed to unmarshal claims: {e}"),
        );
    }
    let aud = audiences(token);
    // 5. Audience: go-oidc checks a single one; Kubernetes checks several (MatchAny) later.
    if a.audiences.len() == 1 {
        let want = &a.audiences[0];
        if !aud.contains(want) {
            return r.fail(
                "audience",
                format!("aud {} does not contain {want:?}", go_list(&aud)),
                format!(
                    "oidc: verify token: oidc: expected audience {want:?} got {}",
                    go_list(&aud)
                ),
            );
        }
        r.pass(
            "audience",
            format!("aud {} contains {want:?}", go_list(&aud)),
        );
    }
    // 6. Expiry, 7. not-before (1 minute leeway); iat is not checked, only shown.
    let exp = token.claim_time("exp");
    let internal = super::token::go_unix_internal;
    match exp {
        Some(e) if internal(e) > internal(now) => r.pass(
            "expiry",
            format!("exp {} ({})", go_time(e), relative(e.saturating_sub(now))),
        ),
        other => {
            let e = other.unwrap_or(-62_135_596_800);
            let seen = match other {
                Some(e) => format!("exp {} ({})", go_time(e), relative(e.saturating_sub(now))),
                None => "no exp claim: go-oidc treats it as expired".into(),
            };
            return r.fail(
                "expiry",
                seen,
                format!(
                    "oidc: verify token: oidc: token is expired (Token Expiry: {})",
                    if other.is_some() {
                        go_time(e)
                    } else {
                        "0001-01-01 00:00:00 +0000 UTC".into()
                    }
                ),
            );
        }
    }
    let skew = token
        .claim_time("iat")
        .map(|iat| {
            let d = iat.saturating_sub(now);
            if d > 0 {
                format!("; iat is {d} s ahead of this machine's clock")
            } else {
                format!("; iat {}", relative(d))
            }
        })
        .unwrap_or_default();
    match token.claim_time("nbf") {
        Some(nbf) if internal(now.saturating_add(60)) < internal(nbf) => {
            return r.fail(
                "not before",
                format!(
                    "nbf {} is {} s ahead of this machine's clock (leeway 60 s){skew}",
                    go_time(nbf),
                    nbf.saturating_sub(now)
                ),
                format!(
                    "oidc: verify token: oidc: current time {} before the nbf (not before) time: {}",
                    go_time(now),
                    go_time(nbf)
                ),
            );
        }
        Some(nbf) => r.pass(
            "not before",
            format!("nbf {} (leeway 60 s){skew}", go_time(nbf)),
        ),
        None => r.pass("not before", format!("no nbf{skew}")),
    }
    if a.audiences.len() > 1 {
        if !aud.iter().any(|x| a.audiences.contains(x)) {
            return r.fail(
                "audience",
                format!(
                    "aud {} shares none of {}",
                    go_list(&aud),
                    go_list(&a.audiences)
                ),
                format!(
                    "oidc: verify token: oidc: expected audience in {} got {}",
                    go_list(&a.audiences),
                    go_list(&aud)
                ),
            );
        }
        r.pass(
            "audience",
            format!(
                "aud {} meets {} (MatchAny)",
                go_list(&aud),
                go_list(&a.audiences)
            ),
        );
    }
    super::mapping::mapped(token, a, r)
}

fn audiences(token: &Jwt) -> Vec<String> {
    match token.claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

enum SigError {
    /// No key verifies; `true` when the token's key is gone from the JWKS (rotated out).
    NoMatch(String, bool),
    Unsupported(String),
}

/// go-oidc keeps the JWKS it fetched and refetches only for a token whose `kid` it does not
/// know: a token signed by a rotated-out key still passes until something makes it refetch.
pub const KEY_CACHE_CAVEAT: &str = "the issuer no longer publishes this key; an API server that fetched its keys before the rotation keeps accepting the token until it refetches them (go-oidc does when a token with an unknown kid arrives, e.g. the next fresh login)";

/// go-oidc's remote key set: the keys with the token's `kid` (all keys without one); any
/// that verifies wins.
/// Go's name for a JSON value's kind in its decoding errors.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// go-jose's header decoding: `kid` and `alg` are strings.
fn malformed_header(token: &Jwt) -> Option<String> {
    for (field, what) in [("kid", "key ID"), ("alg", "algorithm")] {
        match token.header.get(field) {
            None | Some(Value::String(_)) | Some(Value::Null) => {}
            Some(v) => {
                return Some(format!(
                    "failed to unmarshal {what}: json: cannot unmarshal {} into Go value of type string",
                    go_kind(v)
                ));
            }
        }
    }
    None
}

/// go-oidc's `idToken`: `iss`, `sub`, `nonce`, `at_hash` strings; `aud` a string or a list of
/// strings; `exp`, `iat` (and `nbf` unless null) numbers or numeric strings.
fn undecodable_claims(token: &Jwt) -> Option<String> {
    let field = |name: &str, go: &str, v: &Value| {
        format!(
            "json: cannot unmarshal {} into Go struct field idToken.{name} of type {go}",
            go_kind(v)
        )
    };
    for name in ["iss", "sub", "nonce", "at_hash"] {
        match token.claims.get(name) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(v) => return Some(field(name, "string", v)),
        }
    }
    match token.claims.get("aud") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            if let Some(v) = items.iter().find(|v| !v.is_string()) {
                return Some(field("aud", "string", v));
            }
        }
        Some(v) => return Some(field("aud", "[]string", v)),
    }
    for name in ["exp", "iat", "nbf"] {
        match token.claims.get(name) {
            None | Some(Value::Number(_)) => {}
            Some(Value::Null) if name == "nbf" => {}
            Some(Value::Null) => {
                return Some("strconv.ParseFloat: parsing \"\": invalid syntax".into());
            }
            Some(Value::String(s)) if s.parse::<f64>().is_ok() => {}
            Some(Value::String(s)) => {
                return Some(format!(
                    "json: invalid number literal, trying to unmarshal {:?} into Number",
                    format!("{s:?}")
                ));
            }
            Some(v) => return Some(field(name, "json.Number", v)),
        }
    }
    None
}

fn verify_signature(token: &Jwt, set: &JwkSet) -> Result<String, SigError> {
    use jsonwebtoken::{Algorithm, DecodingKey};
    let alg: Algorithm = token.alg.parse().map_err(|_| {
        SigError::Unsupported(format!(
            "signatures with {} cannot be verified here (the jsonwebtoken crate lacks it)",
            token.alg
        ))
    })?;
    let candidates: Vec<_> = set
        .keys
        .iter()
        .filter(|k| match (&token.kid, &k.common.key_id) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    let kid = token.kid.as_deref().unwrap_or("(none)");
    if candidates.is_empty() {
        let have: Vec<String> = set
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        return Err(SigError::NoMatch(
            format!(
                "kid {kid} is not in the issuer's JWKS (it has {}): signed by a key the issuer no longer publishes",
                go_list(&have)
            ),
            true,
        ));
    }
    for k in &candidates {
        let Ok(key) = DecodingKey::from_jwk(k) else {
            continue;
        };
        if let Ok(true) = jsonwebtoken::crypto::verify(
            token.signature(),
            token.signing_input().as_bytes(),
            &key,
            alg,
        ) {
            return Ok(format!(
                "verified with key kid {kid} from the issuer's JWKS"
            ));
        }
    }
    Err(SigError::NoMatch(
        format!("no key with kid {kid} in the JWKS verifies the signature"),
        false,
    ))
}

#[cfg(test)]
mod tests {
    //! A test double signs tokens with its own P-256 key; the verdicts and the `err` texts
    //! are what the API server's checks give (k8s-authn-facts.md §3.2).
    use super::*;
    use crate::explain::config::{self, Authenticator};
    use crate::explain::token::decode;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
    use serde_json::json;

    const ISS: &str = "https://localhost:8443/oauth2/openid/k8s";
    const NOW: i64 = 1_800_000_000;

    struct Issuer {
        key: EncodingKey,
        jwks: JwkSet,
    }

    fn issuer() -> Issuer {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("k1".into());
        Issuer {
            key,
            jwks: JwkSet { keys: vec![jwk] },
        }
    }

    impl Issuer {
        fn sign(&self, claims: Value) -> Jwt {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some("k1".into());
            decode(&jsonwebtoken::encode(&h, &claims, &self.key).unwrap()).unwrap()
        }
    }

    fn claims() -> Value {
        json!({
            "iss": ISS, "aud": "k8s", "sub": "u-1", "exp": NOW + 900, "iat": NOW, "nbf": NOW,
            "preferred_username": "alice@localhost", "groups": ["k8s_users@localhost"],
            "email": "alice@example.com", "email_verified": true, "jti": "j-1",
        })
    }

    fn structured(jwt_yaml: &str) -> Vec<Authenticator> {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{jwt_yaml}"
        );
        config::from_config(&text, "t.yaml", "1.36".parse().unwrap()).unwrap()
    }

    const POST1: &str = "  - issuer: {url: \"https://localhost:8443/oauth2/openid/k8s\", audiences: [k8s]}\n    claimMappings:\n      username: {claim: preferred_username, prefix: \"\"}\n      groups: {claim: groups, prefix: \"\"}\n";

    fn online(i: &Issuer) -> Vec<Discovery> {
        vec![Discovery::Ok {
            url: format!("{ISS}/.well-known/openid-configuration"),
            jwks: Ok(i.jwks.clone()),
        }]
    }

    fn rejected_for(e: &Explanation) -> (String, Option<Cause>) {
        match &e.verdict {
            Verdict::Rejected { err, cause, .. } => (err.clone(), *cause),
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    #[test]
    fn post1_accepts_with_the_mapped_user() {
        let i = issuer();
        let e = explain(&i.sign(claims()), &structured(POST1), &online(&i), NOW + 5);
        let Verdict::Accepted { user, .. } = &e.verdict else {
            panic!("{:?}", e.verdict)
        };
        assert_eq!(user.username, "alice@localhost");
        assert_eq!(user.groups, ["k8s_users@localhost", "system:authenticated"]);
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            ["JTI=j-1"]
        );
    }

    #[test]
    fn post2_flags_say_rs256_expected() {
        let i = issuer();
        let words: Vec<String> = [
            format!("--oidc-issuer-url={ISS}"),
            "--oidc-client-id=k8s".into(),
        ]
        .to_vec();
        let auths =
            crate::explain::flags::from_words(&words, "flags", "1.36".parse().unwrap(), false)
                .unwrap();
        let e = explain(&i.sign(claims()), &auths, &online(&i), NOW);
        let (err, cause) = rejected_for(&e);
        assert_eq!(
            err,
            r#"oidc: verify token: oidc: id token signed with unsupported algorithm, expected ["RS256"] got "ES256""#
        );
        assert_eq!(cause, Some(Cause::UnsupportedSigningAlg));
    }

    /// Authenticators, claims, what the network said, the `err` text wanted, the cause.
    type Case = (
        Vec<Authenticator>,
        Value,
        Vec<Discovery>,
        &'static str,
        Option<Cause>,
    );

    #[test]
    fn each_failure_has_the_api_servers_words_and_cause() {
        let i = issuer();
        let mut c = claims();
        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            c
        };
        let cases: Vec<Case> = vec![
            (
                structured(&POST1.replace("[k8s]", "[kubernetes]")),
                claims(),
                online(&i),
                r#"expected audience "kubernetes" got ["k8s"]"#,
                Some(Cause::Audience),
            ),
            (
                structured(&POST1.replace("/k8s\"", "/k8s/\"")),
                claims(),
                online(&i),
                "invalid bearer token",
                Some(Cause::Issuer),
            ),
            (
                structured(POST1),
                with("exp", json!(NOW - 10)),
                online(&i),
                "token is expired",
                Some(Cause::Expired),
            ),
            (
                structured(POST1),
                with("nbf", json!(NOW + 600)),
                online(&i),
                "before the nbf",
                Some(Cause::NotYetValid),
            ),
            (
                structured(POST1),
                claims(),
                vec![Discovery::Failed(format!(
                    "Get \"{ISS}/.well-known/openid-configuration\": tls: failed to verify certificate: x509: UnknownIssuer"
                ))],
                "authenticator not initialized",
                Some(Cause::UntrustedCa),
            ),
            (
                structured(POST1),
                claims(),
                vec![Discovery::Failed(
                    "Get \"x\": dial tcp: connect: connection refused".into(),
                )],
                "authenticator not initialized",
                Some(Cause::AuthenticatorNotInitialized),
            ),
            (
                structured(POST1),
                claims(),
                vec![Discovery::Ok {
                    url: "u".into(),
                    jwks: Ok(issuer().jwks),
                }],
                "failed to verify signature",
                Some(Cause::Signature),
            ),
            (
                structured(&POST1.replace("preferred_username", "email")),
                with("email_verified", json!(false)),
                online(&i),
                "oidc: email not verified",
                Some(Cause::EmailNotVerified),
            ),
            (
                structured(&POST1.replace("preferred_username", "name")),
                claims(),
                online(&i),
                r#"parse username claims "name": claim not present"#,
                Some(Cause::MissingClaim),
            ),
            (
                structured(
                    &(POST1.to_string()
                        + "    claimValidationRules:\n      - {claim: hd, requiredValue: example.com}\n"),
                ),
                claims(),
                online(&i),
                "required claim hd not present",
                Some(Cause::ClaimRule),
            ),
            (
                structured(
                    &(POST1.to_string()
                        + "    claimValidationRules:\n      - {expression: \"claims.sub == 'x'\", message: not x}\n"),
                ),
                claims(),
                online(&i),
                "validation expression 'claims.sub == 'x'' failed: not x",
                Some(Cause::ClaimRule),
            ),
            (
                structured(
                    &(POST1.to_string()
                        + "    userValidationRules:\n      - {expression: \"!user.username.endsWith('@localhost')\", message: \"no\"}\n"),
                ),
                claims(),
                online(&i),
                "user info validation rule",
                Some(Cause::UserRule),
            ),
            (
                structured(&POST1.replace(
                    "{claim: preferred_username, prefix: \"\"}",
                    "{expression: \"claims.?nick.orValue('')\"}",
                )),
                claims(),
                online(&i),
                "empty username via CEL",
                Some(Cause::ClaimMapping),
            ),
        ];
        for (auths, claims, net, want, cause) in cases {
            let e = explain(&i.sign(claims), &auths, &net, NOW);
            let (err, got) = rejected_for(&e);
            assert!(err.contains(want), "want {want:?} in {err:?}");
            assert_eq!(got, cause, "{err}");
        }
        // Offline, a bad signature cannot be seen: the rest still is.
        c["aud"] = json!(["k8s", "other"]);
        let e = explain(
            &issuer().sign(c),
            &structured(POST1),
            &[Discovery::NotChecked],
            NOW,
        );
        assert!(matches!(e.verdict, Verdict::Accepted { .. }));
        assert!(
            e.sections[0]
                .steps
                .iter()
                .any(|s| s.name == "signature" && s.status == Status::Skip)
        );
    }

    #[test]
    fn a_rotated_out_key_is_a_signature_failure_with_the_key_cache_caveat() {
        let i = issuer();
        let mut rotated = issuer();
        rotated.jwks.keys[0].common.key_id = Some("k2".into());
        let e = explain(
            &i.sign(claims()),
            &structured(POST1),
            &online(&rotated),
            NOW,
        );
        let Verdict::Rejected { cause, caveat, .. } = &e.verdict else {
            panic!("{:?}", e.verdict)
        };
        assert_eq!(*cause, Some(Cause::Signature));
        assert_eq!(caveat.as_deref(), Some(KEY_CACHE_CAVEAT));
        // Same kid, other key: a plain bad signature, no caveat.
        let e = explain(
            &i.sign(claims()),
            &structured(POST1),
            &online(&issuer()),
            NOW,
        );
        assert!(matches!(&e.verdict, Verdict::Rejected { caveat: None, .. }));
    }

    #[test]
    fn the_first_accepting_authenticator_wins_and_errors_aggregate() {
        let i = issuer();
        let two = format!(
            "{}{}",
            POST1.replace("[k8s]", "[kubernetes]"),
            POST1.replace("8443", "9443")
        );
        let e = explain(&i.sign(claims()), &structured(&two), &online(&i), NOW);
        let (err, cause) = rejected_for(&e);
        assert!(
            err.starts_with("oidc: verify token: oidc: expected audience"),
            "{err}"
        );
        assert_eq!(cause, Some(Cause::Audience));
        assert!(matches!(e.sections[1].outcome, Outcome::Declined));
    }

    #[test]
    fn unsupported_cel_is_said_not_guessed() {
        let i = issuer();
        let auths = structured(
            &(POST1.to_string()
                + "    claimValidationRules:\n      - {expression: \"url(claims.iss).getHost() == 'localhost'\"}\n"),
        );
        let e = explain(&i.sign(claims()), &auths, &online(&i), NOW);
        assert!(
            matches!(&e.verdict, Verdict::Undetermined(w) if w.contains("`url`")),
            "{:?}",
            e.verdict
        );
    }
}
