//! Why the API server said 401, as a scenario names it (`unauthorized: {cause: …}`), and
//! what a user should change for each. Reading a cause out of the API server's log is
//! `check::cause`; this is only the vocabulary, shared by the scenario, the checks and the report.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// `id token signed with unsupported algorithm` (post 2: RS256 expected, ES256 got).
    UnsupportedSigningAlg,
    /// `expected audience`.
    Audience,
    /// The token's `iss` matches no authenticator: only `invalid bearer token` is logged.
    Issuer,
    /// `token is expired`.
    Expired,
    /// Discovery could not verify Kanidm's certificate, so the authenticator never initialised.
    UntrustedCa,
    /// `oidc: authenticator not initialized` for any other reason.
    AuthenticatorNotInitialized,
    /// `email not verified`.
    EmailNotVerified,
    /// A `claimValidationRules` or required-claim check failed.
    ClaimRule,
    /// A `userValidationRules` expression failed.
    UserRule,
    /// The username claim is missing from the token.
    MissingClaim,
    /// `failed to verify signature`.
    Signature,
    /// `nbf` is ahead of the API server's clock by more than the 1-minute leeway.
    NotYetValid,
    /// A claim mapping failed: a username/groups/uid/extra expression erred or gave the
    /// wrong type, a mapped claim has the wrong type, or the username came out empty.
    ClaimMapping,
    /// The token's header or standard claims have types go-oidc cannot decode (`kid` a
    /// number, `exp` a word, `aud` an object): `malformed jwt`, `failed to unmarshal claims`.
    MalformedToken,
}

impl Cause {
    pub const ALL: [Cause; 14] = [
        Cause::UnsupportedSigningAlg,
        Cause::Audience,
        Cause::Issuer,
        Cause::Expired,
        Cause::UntrustedCa,
        Cause::AuthenticatorNotInitialized,
        Cause::EmailNotVerified,
        Cause::ClaimRule,
        Cause::UserRule,
        Cause::MissingClaim,
        Cause::Signature,
        Cause::NotYetValid,
        Cause::ClaimMapping,
        Cause::MalformedToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::UnsupportedSigningAlg => "unsupported-signing-alg",
            Cause::Audience => "audience",
            Cause::Issuer => "issuer",
            Cause::Expired => "expired",
            Cause::UntrustedCa => "untrusted-ca",
            Cause::AuthenticatorNotInitialized => "authenticator-not-initialized",
            Cause::EmailNotVerified => "email-not-verified",
            Cause::ClaimRule => "claim-rule",
            Cause::UserRule => "user-rule",
            Cause::MissingClaim => "missing-claim",
            Cause::Signature => "signature",
            Cause::NotYetValid => "not-yet-valid",
            Cause::ClaimMapping => "claim-mapping",
            Cause::MalformedToken => "malformed-token",
        }
    }

    /// What a user should change when this is the cause.
    pub fn hint(self) -> &'static str {
        match self {
            Cause::UnsupportedSigningAlg => {
                "Kanidm signs ES256 by default; add --oidc-signing-algs=ES256 or enable legacy crypto (RS256) on the client"
            }
            Cause::Audience => {
                "the API server's audiences/--oidc-client-id must equal the Kanidm client name"
            }
            Cause::Issuer => {
                "issuer URL must equal the token's iss byte for byte: <origin>/oauth2/openid/<client>, no trailing slash"
            }
            Cause::Expired => "Kanidm id_tokens live 900 s; log in again",
            Cause::UntrustedCa => {
                "give the API server Kanidm's CA (certificateAuthority / --oidc-ca-file)"
            }
            Cause::AuthenticatorNotInitialized => {
                "discovery has not succeeded yet; check the issuer URL is reachable from the API server"
            }
            Cause::EmailNotVerified => {
                "the token says email_verified=false; map a different username claim"
            }
            Cause::ClaimRule => "a claimValidationRule or --oidc-required-claim rejected the token",
            Cause::UserRule => "a userValidationRule rejected the mapped user",
            Cause::MissingClaim => {
                "the mapped claim is not in the token; request the scope that carries it"
            }
            Cause::Signature => "the token's signature does not match the issuer's JWKS",
            Cause::NotYetValid => {
                "the token's nbf is ahead of the API server's clock by more than a minute; sync the clocks (NTP)"
            }
            Cause::ClaimMapping => {
                "a claimMappings entry failed on this token: check its claim's type or its expression against the token's claims"
            }
            Cause::MalformedToken => {
                "the token's header or standard claims have the wrong JSON types (iss/sub strings, aud a string or list of strings, exp/iat/nbf numbers, kid a string); the issuer produced it, not the API server's configuration"
            }
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
