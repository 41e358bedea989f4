//! The token corpus (pure): mutations of a Kanidm 1.10.4 id_token, for two authenticators
//! of one structured configuration. `a` maps claims as post 1 does; `b` maps with CEL
//! (an email username guarded by `email_verified`, groups, uid, extra, claim and user
//! rules). Each token is a header and a payload as JSON text (so a mutation can be any
//! JSON: a number where a string belongs, a duplicated or missing claim), signed by the
//! issuer's key, a key the issuer does not publish, or not at all.

use serde_json::{Value, json};

/// How a token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The issuer's published ES256 key (`kid` as the header says).
    Issuer,
    /// An ES256 key the issuer does not publish.
    Stranger,
    /// The signature bytes replaced by garbage.
    Garbage,
    /// No signature part at all (`header.payload.`).
    Empty,
}

#[derive(Debug, Clone)]
pub struct TokenCase {
    pub name: String,
    /// Which authenticator's issuer the base token comes from: `a` or `b`.
    pub authenticator: char,
    pub header: String,
    pub payload: String,
    pub signer: Signer,
}

/// The published key's id.
pub const KID: &str = "k1";

/// A Kanidm id_token's claims (kanidmd 1.10.4, scopes openid email profile groups): ES256,
/// `sub` the person's UUID, SPNs and UUIDs mixed in `groups`, `exp = iat + 900`, `nbf = iat`,
/// the session id as `jti`.
pub fn kanidm_claims(iss: &str, now: i64) -> Value {
    json!({
        "iss": iss,
        "sub": "9e4a3c0e-5b1d-4b6e-8f55-2b1e1f1d6c01",
        "aud": "k8s",
        "azp": "k8s",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": "0b9b1f3e-7a36-4d8e-9c2f-2f8e5d8c7a11",
        "nonce": "n-0S6_WzA2Mj",
        "name": "Alice",
        "preferred_username": "alice@localhost",
        "email": "alice@example.com",
        "email_verified": true,
        "scopes": ["email", "groups", "openid", "profile"],
        "groups": [
            "idm_all_persons@localhost",
            "00000000-0000-0000-0000-000000000035",
            "idm_all_accounts@localhost",
            "k8s_users@localhost",
            "5e2b8c1d-3f4a-4c6b-9d7e-1a2b3c4d5e6f",
        ],
    })
}

/// The structured configuration both authenticators live in.
pub fn config(api_version: &str, issuer_a: &str, issuer_b: &str, ca_pem: &str) -> String {
    let doc = json!({
        "apiVersion": api_version,
        "kind": "AuthenticationConfiguration",
        "jwt": [
            {
                "issuer": {"url": issuer_a, "audiences": ["k8s"], "certificateAuthority": ca_pem},
                "claimMappings": {
                    "username": {"claim": "preferred_username", "prefix": ""},
                    "groups": {"claim": "groups", "prefix": ""},
                },
            },
            {
                "issuer": {
                    "url": issuer_b, "audiences": ["k8s", "other"],
                    "audienceMatchPolicy": "MatchAny", "certificateAuthority": ca_pem,
                },
                "claimValidationRules": [
                    {"expression": "claims.email_verified == true", "message": "email not verified"},
                    {"claim": "azp", "requiredValue": "k8s"},
                ],
                "claimMappings": {
                    "username": {"expression": "'kanidm:' + claims.email"},
                    "groups": {"expression": "has(claims.groups) ? dyn(claims.groups).filter(g, g.endsWith('@localhost')) : []"},
                    "uid": {"claim": "sub"},
                    "extra": [{"key": "example.com/name", "valueExpression": "claims.?name.orValue('')"}],
                },
                "userValidationRules": [
                    {"expression": "!user.username.startsWith('kanidm:system')", "message": "no system users"},
                ],
            },
        ],
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Every token case, for the two issuers, at `now`.
pub fn cases(issuer_a: &str, issuer_b: &str, now: i64) -> Vec<TokenCase> {
    let mut out = Vec::new();
    for (which, iss) in [('a', issuer_a), ('b', issuer_b)] {
        let base = kanidm_claims(iss, now);
        let header = json!({"alg": "ES256", "kid": KID, "typ": "JWT"});
        let mut add = |name: String, header: &Value, payload: String, signer: Signer| {
            out.push(TokenCase {
                name: format!("{which}-{name}"),
                authenticator: which,
                header: header.to_string(),
                payload,
                signer,
            });
        };
        add("base".into(), &header, base.to_string(), Signer::Issuer);
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            c.to_string()
        };
        let without = |k: &str| {
            let mut c = base.clone();
            if let Some(o) = c.as_object_mut() {
                o.remove(k);
            }
            c.to_string()
        };
        // Dates: extremes, types, and the edges of go-oidc's checks (nbf has 1 minute).
        let dates = [
            ("max", json!(i64::MAX)),
            ("min", json!(i64::MIN)),
            ("u64max", json!(u64::MAX)),
            ("1e300", json!(1e300)),
            ("-1e300", json!(-1e300)),
            ("9.3e18", json!(9.3e18)),
            ("wrap", json!(i64::MAX - 62_135_596_800 + 1)),
            ("zero", json!(0)),
            ("negative", json!(-1)),
            ("fraction", json!(now as f64 + 0.5)),
            ("string", json!((now + 600).to_string())),
            ("word", json!("soon")),
            ("bool", json!(true)),
            ("null", Value::Null),
            ("array", json!([now])),
            ("object", json!({"t": now})),
            ("past", json!(now - 120)),
            ("minus-30", json!(now - 30)),
            ("plus-30", json!(now + 30)),
            ("plus-120", json!(now + 120)),
            ("plus-year", json!(now + 31_536_000)),
        ];
        for claim in ["exp", "nbf", "iat"] {
            for (n, v) in &dates {
                add(
                    format!("{claim}-{n}"),
                    &header,
                    with(claim, v.clone()),
                    Signer::Issuer,
                );
            }
            add(
                format!("{claim}-missing"),
                &header,
                without(claim),
                Signer::Issuer,
            );
        }
        // Audience forms.
        for (n, v) in [
            ("list", json!(["k8s"])),
            ("two", json!(["k8s", "other"])),
            ("other", json!("other")),
            ("other-list", json!(["other"])),
            ("wrong", json!("kubernetes")),
            ("empty-list", json!([])),
            ("empty", json!("")),
            ("null", Value::Null),
            ("number", json!(1)),
            ("mixed", json!(["k8s", 1])),
            ("object", json!({"k8s": true})),
            ("case", json!("K8S")),
        ] {
            add(format!("aud-{n}"), &header, with("aud", v), Signer::Issuer);
        }
        add(
            "aud-missing".into(),
            &header,
            without("aud"),
            Signer::Issuer,
        );
        // Issuer forms.
        for (n, v) in [
            ("slash", json!(format!("{iss}/"))),
            ("other", json!("https://idm.example.com/oauth2/openid/k8s")),
            ("number", json!(1)),
            ("null", Value::Null),
            ("upper", json!(iss.to_uppercase())),
        ] {
            add(format!("iss-{n}"), &header, with("iss", v), Signer::Issuer);
        }
        add(
            "iss-missing".into(),
            &header,
            without("iss"),
            Signer::Issuer,
        );
        // Headers: algorithm and key id.
        for (n, h) in [
            ("alg-rs256", json!({"alg": "RS256", "kid": KID})),
            ("alg-es384", json!({"alg": "ES384", "kid": KID})),
            ("alg-none", json!({"alg": "none", "kid": KID})),
            ("alg-hs256", json!({"alg": "HS256", "kid": KID})),
            ("alg-lower", json!({"alg": "es256", "kid": KID})),
            ("alg-missing", json!({"kid": KID})),
            ("alg-number", json!({"alg": 256, "kid": KID})),
            ("kid-unknown", json!({"alg": "ES256", "kid": "nope"})),
            ("kid-missing", json!({"alg": "ES256"})),
            ("kid-empty", json!({"alg": "ES256", "kid": ""})),
            ("kid-number", json!({"alg": "ES256", "kid": 1})),
            (
                "typ-at",
                json!({"alg": "ES256", "kid": KID, "typ": "at+jwt"}),
            ),
            ("crit", json!({"alg": "ES256", "kid": KID, "crit": ["exp"]})),
        ] {
            add(format!("header-{n}"), &h, base.to_string(), Signer::Issuer);
        }
        // Signatures.
        add(
            "sig-stranger".into(),
            &header,
            base.to_string(),
            Signer::Stranger,
        );
        add(
            "sig-garbage".into(),
            &header,
            base.to_string(),
            Signer::Garbage,
        );
        add("sig-empty".into(), &header, base.to_string(), Signer::Empty);
        // Claims the mappings read: types, nesting, absence.
        for (claim, values) in [
            (
                "preferred_username",
                vec![
                    ("number", json!(1)),
                    ("empty", json!("")),
                    ("list", json!(["alice"])),
                    ("null", Value::Null),
                    ("control", json!("ali\u{1b}[2Jce")),
                    ("long", json!("a".repeat(2000))),
                    ("system", json!("system:admin")),
                ],
            ),
            (
                "groups",
                vec![
                    ("string", json!("k8s_users@localhost")),
                    ("number-in-list", json!(["k8s_users@localhost", 1])),
                    ("nested", json!([["k8s_users@localhost"]])),
                    ("object", json!({"k8s_users@localhost": true})),
                    ("empty", json!([])),
                    ("null", Value::Null),
                    (
                        "many",
                        json!(
                            (0..300)
                                .map(|i| format!("g{i}@localhost"))
                                .collect::<Vec<_>>()
                        ),
                    ),
                ],
            ),
            (
                "email",
                vec![
                    ("number", json!(1)),
                    ("empty", json!("")),
                    ("list", json!(["alice@example.com"])),
                    ("system", json!("system-bot@example.com")),
                ],
            ),
            (
                "email_verified",
                vec![
                    ("false", json!(false)),
                    ("string", json!("true")),
                    ("number", json!(1)),
                    ("null", Value::Null),
                ],
            ),
            (
                "sub",
                vec![
                    ("number", json!(1)),
                    ("empty", json!("")),
                    ("list", json!(["x"])),
                ],
            ),
            (
                "azp",
                vec![
                    ("other", json!("other")),
                    ("number", json!(1)),
                    ("empty", json!("")),
                ],
            ),
            (
                "jti",
                vec![
                    ("number", json!(7)),
                    ("empty", json!("")),
                    ("list", json!(["x"])),
                ],
            ),
            (
                "name",
                vec![("number", json!(1)), ("list", json!(["A", "B"]))],
            ),
        ] {
            for (n, v) in values {
                add(
                    format!("{claim}-{n}"),
                    &header,
                    with(claim, v),
                    Signer::Issuer,
                );
            }
            add(
                format!("{claim}-missing"),
                &header,
                without(claim),
                Signer::Issuer,
            );
        }
        // Payloads that are not a claims object.
        for (n, p) in [
            ("array", "[1,2]".to_string()),
            ("number", "7".to_string()),
            (
                "duplicate-sub",
                base.to_string().replacen('{', "{\"sub\":\"other\",", 1),
            ),
            (
                "deep",
                format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200)),
            ),
        ] {
            add(format!("payload-{n}"), &header, p, Signer::Issuer);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_two_hundred_tokens_over_both_authenticators() {
        let c = cases(
            "https://localhost:1/a",
            "https://localhost:1/b",
            1_700_000_000,
        );
        assert!(c.len() >= 200, "{}", c.len());
        assert!(c.iter().any(|t| t.authenticator == 'b'));
        let names: std::collections::HashSet<&str> = c.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), c.len(), "names are unique");
        let cfg = config(
            "apiserver.config.k8s.io/v1",
            "https://localhost:1/a",
            "https://localhost:1/b",
            "PEM",
        );
        assert!(cfg.contains("dyn(claims.groups)"));
    }
}
