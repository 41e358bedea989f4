//! Why the API server said 401: the cause, read from its own log line.
//!
//! kube-apiserver never tells the client why a token was rejected; the reason is only in
//! its log (`"Unable to authenticate the request" err="…"`). These patterns come from the
//! verified log lines in `k8s-authn-facts.md` §3.2 and `verified-by-running.md`.

pub use crate::scenario::cause::Cause;

/// Classify the `err="…"` text of an `Unable to authenticate the request` line.
pub fn classify(err: &str) -> Option<Cause> {
    let rules: [(&str, Cause); 25] = [
        ("unsupported algorithm", Cause::UnsupportedSigningAlg),
        ("malformed jwt", Cause::MalformedToken),
        ("failed to unmarshal claims", Cause::MalformedToken),
        ("id token not signed", Cause::MalformedToken),
        (
            "failed to obtain source from claim name",
            Cause::MalformedToken,
        ),
        ("source does not exist", Cause::MalformedToken),
        ("oidc: parse claim ", Cause::ClaimRule),
        ("expected audience", Cause::Audience),
        ("token is expired", Cause::Expired),
        ("email not verified", Cause::EmailNotVerified),
        ("claim validation expression", Cause::ClaimRule),
        ("required claim", Cause::ClaimRule),
        ("user info validation rule", Cause::UserRule),
        ("claim not present", Cause::MissingClaim),
        ("before the nbf", Cause::NotYetValid),
        ("claim expression", Cause::ClaimMapping),
        ("empty username", Cause::ClaimMapping),
        ("parse username claims", Cause::ClaimMapping),
        ("parse groups claim", Cause::ClaimMapping),
        ("parse uid claim", Cause::ClaimMapping),
        ("parse 'email_verified'", Cause::ClaimMapping),
        ("failed to verify signature", Cause::Signature),
        ("x509:", Cause::UntrustedCa),
        (
            "authenticator not initialized",
            Cause::AuthenticatorNotInitialized,
        ),
        ("invalid bearer token", Cause::Issuer),
    ];
    rules
        .iter()
        .find(|(needle, _)| err.contains(needle))
        .map(|(_, cause)| *cause)
}

/// Extract the `err="…"` value from a klog `Unable to authenticate the request` line.
pub fn auth_error_of(line: &str) -> Option<String> {
    if !line.contains("Unable to authenticate the request") {
        return None;
    }
    let start = line.find("err=\"")? + 5;
    let rest = &line[start..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '"' => break,
            _ => out.push(c),
        }
    }
    Some(out)
}

/// The discovery failure of an authenticator that never initialised
/// (`oidc authenticator: initializing plugin: …`), mapped to its cause.
pub fn init_failure_of(line: &str) -> Option<(Cause, String)> {
    let idx = line.find("initializing plugin")?;
    let text = line[idx..].replace("\\\"", "\"");
    let cause = if text.contains("x509") || text.contains("certificate") {
        Cause::UntrustedCa
    } else if text.contains("issuer did not match") {
        Cause::Issuer
    } else {
        Cause::AuthenticatorNotInitialized
    };
    Some((cause, text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn init_failures() {
        let x = r#"E1122 oidc.go:433] "oidc authenticator: initializing plugin" err="Get \"https://localhost:1/oauth2/openid/k8s/.well-known/openid-configuration\": tls: failed to verify certificate: x509: certificate signed by unknown authority""#;
        assert_eq!(init_failure_of(x).unwrap().0, Cause::UntrustedCa);
        let i = "oidc authenticator: initializing plugin: oidc: issuer did not match the issuer returned by provider";
        assert_eq!(init_failure_of(i).unwrap().0, Cause::Issuer);
        assert!(init_failure_of("Serving securely").is_none());
    }

    use super::*;

    #[test]
    fn post2_line_is_unsupported_alg() {
        // Verbatim from verified-by-running.md.
        let line = r#"E1122 10:00:00.000000   123 authentication.go:75] "Unable to authenticate the request" err="[invalid bearer token, oidc: verify token: oidc: id token signed with unsupported algorithm, expected [\"RS256\"] got \"ES256\"]""#;
        let err = auth_error_of(line).unwrap();
        assert!(err.contains(r#"expected ["RS256"] got "ES256""#), "{err}");
        assert_eq!(classify(&err), Some(Cause::UnsupportedSigningAlg));
    }

    #[test]
    fn bare_invalid_bearer_token_is_issuer() {
        assert_eq!(classify("invalid bearer token"), Some(Cause::Issuer));
    }

    #[test]
    fn audience_and_others() {
        let cases = [
            (
                r#"oidc: verify token: oidc: expected audience "kubernetes" got ["k8s"]"#,
                Cause::Audience,
            ),
            ("oidc: email not verified", Cause::EmailNotVerified),
            (
                "oidc: authenticator not initialized",
                Cause::AuthenticatorNotInitialized,
            ),
            (
                "oidc: verify token: oidc: token is expired (Token Expiry: x)",
                Cause::Expired,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(classify(err), Some(want), "{err}");
        }
        assert_eq!(classify("something else"), None);
    }

    #[test]
    fn other_lines_are_ignored() {
        assert_eq!(auth_error_of(r#"I1122 "Serving securely""#), None);
    }
}
