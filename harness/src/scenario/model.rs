//! The scenario file schema. One YAML file = one reproducible situation.
//!
//! Every struct rejects unknown fields so a typo is an error with a line number, never a
//! silently ignored setting. Names that other parts of the file refer to are kept as
//! [`Spanned`] so cross-reference errors can point at the exact line.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// A name with the position where it was written.
pub type Name = Spanned<String>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// Short identifier; defaults to the file stem. It names directories and files of a
    /// run, so it is checked like one path component (see `load::valid_scenario_name`).
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// One paragraph: what this scenario shows.
    pub description: String,
    /// Which blog post step this mirrors (free text).
    #[serde(default)]
    pub mirrors: Option<String>,
    pub kanidm: KanidmState,
    pub api_server: Spanned<ApiServerAuth>,
    #[serde(default)]
    pub rbac: Rbac,
    /// How the harness logs people in (the kubelogin side).
    pub login: LoginSettings,
    pub expect: Vec<Expectation>,
    /// Changes over time after the initial state, each followed by its own expectations.
    #[serde(default)]
    pub steps: Vec<Step>,
}

// ----------------------------------------------------------------- steps --

/// One change over time: what changes in Kanidm and/or the API server, then what must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    /// Names the step in the report and in `tokenFrom`; checked like a scenario name.
    pub name: Name,
    #[serde(default)]
    pub description: Option<String>,
    /// Applied in order.
    #[serde(default)]
    pub change: Vec<Spanned<Change>>,
    /// The API server's authentication from this step on (reloaded or restarted).
    #[serde(default)]
    pub api_server: Option<Spanned<ApiServerAuth>>,
    /// Restart the API server even when its authentication stays the same.
    #[serde(default)]
    pub restart_api_server: bool,
    pub expect: Vec<Expectation>,
}

/// One change a step makes. Changes of Kanidm's state (members, scope maps, crypto, names)
/// go through the same planner as a new scenario; the others are events on the server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Change {
    AddToGroup {
        person: Name,
        group: Name,
    },
    RemoveFromGroup {
        person: Name,
        group: Name,
    },
    SetScopeMap {
        client: Name,
        group: Name,
        scopes: Vec<Name>,
    },
    RemoveScopeMap {
        client: Name,
        group: Name,
    },
    LegacyCrypto {
        client: Name,
        enabled: bool,
    },
    RenamePerson {
        person: Name,
        to: Name,
    },
    /// `account_expire` set to a moment ago.
    ExpireAccount {
        person: Name,
    },
    ClearAccountExpiry {
        person: Name,
    },
    /// Every Kanidm session of the person destroyed (their SSO and the OAuth2 sessions under it).
    RevokeSessions {
        person: Name,
    },
    /// `kanidm system oauth2 reset-secrets <client>`.
    ResetSecrets {
        client: Name,
    },
    /// A new signing key now, the old ones revoked
    /// (`rotate-cryptographic-keys` + `revoke-cryptographic-key`).
    RotateSigningKey {
        client: Name,
    },
    /// Kanidm stops (its data stays); the API server is not told.
    StopKanidm,
    /// Kanidm starts again on the same origin with the same data.
    StartKanidm,
}

// ---------------------------------------------------------------- Kanidm --

#[derive(Debug, Clone, Deserialize, Default, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KanidmState {
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub persons: Vec<Person>,
    #[serde(default)]
    pub oauth2_clients: Vec<OAuth2Client>,
    /// Account policy for `idm_all_persons`. Kanidm's default is `mfa`.
    #[serde(default)]
    pub credential_type_minimum: Option<CredentialTypeMinimum>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CredentialTypeMinimum {
    Any,
    Mfa,
    Passkey,
}

impl CredentialTypeMinimum {
    pub fn as_kanidm(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Mfa => "mfa",
            Self::Passkey => "passkey",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Group {
    pub name: Name,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Person {
    pub name: Name,
    pub display_name: String,
    #[serde(default)]
    pub mail: Vec<String>,
    #[serde(default)]
    pub groups: Vec<Name>,
    #[serde(default)]
    pub credential: CredentialKind,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// Password plus TOTP: what Kanidm's default MFA policy requires.
    #[default]
    PasswordTotp,
    /// Password only: needs `credentialTypeMinimum: any`.
    Password,
    /// A passkey enrolled through the browser's virtual authenticator.
    Passkey,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OAuth2Client {
    pub name: Name,
    pub display_name: String,
    /// Public clients use PKCE and have no secret (what both posts use).
    #[serde(default = "yes")]
    pub public: bool,
    /// Landing page (`oauth2_rs_origin_landing`).
    pub landing_url: String,
    #[serde(default)]
    pub redirect_urls: Vec<String>,
    #[serde(default)]
    pub localhost_redirects: bool,
    #[serde(default)]
    pub scope_maps: Vec<ScopeMap>,
    #[serde(default)]
    pub sup_scope_maps: Vec<ScopeMap>,
    /// Sign tokens with RS256 instead of ES256.
    #[serde(default)]
    pub legacy_crypto: bool,
    #[serde(default)]
    pub prefer_short_username: bool,
    #[serde(default)]
    pub claim_maps: Vec<ClaimMap>,
    /// Path to an image (relative to the scenario file).
    #[serde(default)]
    pub image: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScopeMap {
    pub group: Name,
    pub scopes: Vec<Name>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimMap {
    pub claim: Name,
    pub group: Name,
    pub values: Vec<String>,
    #[serde(default)]
    pub join: Option<ClaimJoin>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClaimJoin {
    Array,
    Csv,
    Ssv,
}

// ------------------------------------------------------------ API server --

/// Exactly one of `structured` or `legacyFlags`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiServerAuth {
    #[serde(default)]
    pub structured: Option<Spanned<StructuredAuth>>,
    #[serde(default)]
    pub legacy_flags: Option<Spanned<LegacyFlags>>,
}

impl JwtAuthenticator {
    /// Every field the renderer resolves placeholders in, by its name: claim mappings, CEL
    /// expressions, rule values and messages, audiences.
    pub fn placeholder_texts(&self) -> Vec<(&'static str, &String)> {
        let m = &self.claim_mappings;
        let mut texts: Vec<(&str, &String)> = Vec::new();
        for (name, pm) in [
            ("username", Some(&m.username)),
            ("groups", m.groups.as_ref()),
        ] {
            if let Some(pm) = pm {
                texts.extend(
                    pm.claim
                        .iter()
                        .chain(&pm.prefix)
                        .chain(&pm.expression)
                        .map(|t| (name, t)),
                );
            }
        }
        if let Some(u) = &m.uid {
            texts.extend(u.claim.iter().chain(&u.expression).map(|t| ("uid", t)));
        }
        texts.extend(
            m.extra
                .iter()
                .flat_map(|e| [("extra", &e.key), ("extra", &e.value_expression)]),
        );
        for r in &self.claim_validation_rules {
            texts.extend(
                r.claim
                    .iter()
                    .chain(&r.required_value)
                    .chain(&r.expression)
                    .chain(&r.message)
                    .map(|t| ("claimValidationRules", t)),
            );
        }
        for r in &self.user_validation_rules {
            texts.extend(
                std::iter::once(&r.expression)
                    .chain(&r.message)
                    .map(|t| ("userValidationRules", t)),
            );
        }
        texts.extend(
            self.issuer
                .audiences
                .iter()
                .flatten()
                .map(|t| ("issuer.audiences", t)),
        );
        texts
    }
}

impl ApiServerAuth {
    /// Every text of this section the renderer resolves placeholders in.
    pub fn placeholder_texts(&self) -> Vec<&String> {
        let mut out: Vec<&String> = Vec::new();
        if let Some(st) = &self.structured {
            for j in &st.value.jwt {
                out.extend(j.placeholder_texts().into_iter().map(|(_, t)| t));
            }
        }
        if let Some(l) = &self.legacy_flags {
            let f = &l.value;
            out.extend(
                f.username_prefix
                    .iter()
                    .chain(&f.groups_prefix)
                    .chain(&f.client_id)
                    .chain(&f.required_claims),
            );
        }
        out
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StructuredAuth {
    pub jwt: Vec<JwtAuthenticator>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuthenticator {
    pub issuer: Issuer,
    pub claim_mappings: ClaimMappings,
    #[serde(default)]
    pub claim_validation_rules: Vec<ClaimValidationRule>,
    #[serde(default)]
    pub user_validation_rules: Vec<UserValidationRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Issuer {
    /// The Kanidm OAuth2 client whose issuer URL this is.
    pub client: Name,
    /// Defaults to `[<client name>]`.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub audience_match_policy: Option<String>,
    /// Override the issuer URL (to reproduce an issuer mismatch). Placeholders allowed.
    #[serde(default)]
    pub url_override: Option<String>,
    /// Leave out the lab CA (to reproduce "untrusted CA").
    #[serde(default)]
    pub omit_certificate_authority: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimMappings {
    pub username: PrefixedClaimOrExpression,
    #[serde(default)]
    pub groups: Option<PrefixedClaimOrExpression>,
    #[serde(default)]
    pub uid: Option<ClaimOrExpression>,
    #[serde(default)]
    pub extra: Vec<ExtraMapping>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefixedClaimOrExpression {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimOrExpression {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtraMapping {
    pub key: String,
    pub value_expression: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimValidationRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserValidationRule {
    pub expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The legacy `--oidc-*` flags (post 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LegacyFlags {
    /// The Kanidm OAuth2 client whose issuer URL goes into `--oidc-issuer-url`.
    pub client: Name,
    /// `--oidc-client-id`; defaults to the client name.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username_claim: Option<String>,
    #[serde(default)]
    pub username_prefix: Option<String>,
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub groups_prefix: Option<String>,
    /// `--oidc-signing-algs`; unset means the API server default (RS256 only).
    #[serde(default)]
    pub signing_algs: Vec<Name>,
    /// `--oidc-required-claim key=value`.
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub omit_ca_file: bool,
}

// ------------------------------------------------------------------ RBAC --

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rbac {
    /// ClusterRoles defined by the scenario.
    #[serde(default)]
    pub cluster_roles: Vec<ClusterRoleDef>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterRoleDef {
    pub name: Name,
    pub rules: Vec<PolicyRuleDef>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyRuleDef {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Binding {
    pub name: Name,
    /// A built-in role (`view`, `edit`, `admin`, `cluster-admin`) or one from `clusterRoles`.
    pub cluster_role: Name,
    /// Set for a RoleBinding in this namespace; unset for a ClusterRoleBinding.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Group names exactly as the API server sees them (placeholders allowed).
    #[serde(default)]
    pub groups: Vec<String>,
    /// User names exactly as the API server sees them (placeholders allowed).
    #[serde(default)]
    pub users: Vec<String>,
}

// ----------------------------------------------------------------- login --

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoginSettings {
    pub client: Name,
    /// Who logs people in: the harness's own PKCE client (default) or real kubelogin.
    #[serde(default)]
    pub via: LoginVia,
    /// Scopes requested at the authorize endpoint by the built-in client (kubelogin's
    /// `--oidc-extra-scope` plus openid). With `via: kubelogin` kubelogin decides.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `via: kubelogin`: the exec block or the `setup` flags, as the post writes them.
    #[serde(default)]
    pub kubelogin: Option<KubeloginLogin>,
    /// Fixed redirect listener port (post 2 registers 8000); unset = an ephemeral port.
    #[serde(default)]
    pub redirect_port: Option<u16>,
    /// Redirect path on the listener.
    #[serde(default)]
    pub redirect_path: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LoginVia {
    /// The harness's PKCE client and exec plugin.
    #[default]
    Builtin,
    /// int128/kubelogin (`kubectl oidc-login`), found at run time.
    Kubelogin,
}

/// How kubelogin is configured: post 1 writes the exec block by hand, post 2 runs
/// `kubectl oidc-login setup` and pastes the command it prints. Exactly one of the two.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeloginLogin {
    #[serde(default)]
    pub exec: Option<Spanned<ExecBlock>>,
    /// The flags given to `kubectl oidc-login setup` (placeholders allowed).
    #[serde(default)]
    pub setup: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A kubeconfig user's `exec:` block, as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecBlock {
    pub api_version: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    /// `IfAvailable`, `Always` or `Never` (required by `client.authentication.k8s.io/v1`).
    #[serde(default)]
    pub interactive_mode: Option<String>,
}

/// How a kubelogin refresh must go.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshExpect {
    /// `get-token --force-refresh` gets a new id_token without the browser.
    Silent,
    /// The refresh is refused and kubelogin falls back to the browser.
    Browser,
}

// ----------------------------------------------------------- expectations --

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    pub person: Name,
    /// In a step: check the token this person got at `initial` or at an earlier step
    /// instead of logging in afresh.
    #[serde(default)]
    pub token_from: Option<Name>,
    #[serde(default)]
    pub login: LoginOutcome,
    /// `via: kubelogin`, in a step: the token comes from `get-token --force-refresh` on a
    /// copy of the person's kubelogin cache from the step before (what kubectl does when
    /// the id_token expires), and the refresh must go this way.
    #[serde(default)]
    pub refresh: Option<Spanned<RefreshExpect>>,
    /// With `refresh`: this many `get-token --force-refresh` at once on the one cache
    /// (kubelogin's file lock); every one must give a token.
    #[serde(default)]
    pub concurrent: Option<Spanned<u8>>,
    /// `kubectl auth whoami` as the API server maps this person.
    #[serde(default)]
    pub whoami: Option<WhoamiExpect>,
    /// Requests that must be allowed, e.g. `list pods -A`, `delete namespace scratch`.
    #[serde(default)]
    pub allowed: Vec<Spanned<super::action::Action>>,
    /// Requests that must be Forbidden (403): authenticated, but RBAC says no.
    #[serde(default)]
    pub forbidden: Vec<Spanned<super::action::Action>>,
    /// The token must be rejected (401) for this cause.
    #[serde(default)]
    pub unauthorized: Option<UnauthorizedExpect>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LoginOutcome {
    #[default]
    Ok,
    /// Kanidm shows "Access Denied" (the person is in no scope-mapped group).
    AccessDenied,
    /// Kanidm refuses the sign-in itself ("Login Failed": an expired or locked account).
    Refused,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhoamiExpect {
    #[serde(default)]
    pub username: Option<String>,
    /// Groups that must all be present.
    #[serde(default)]
    pub groups_include: Vec<String>,
    /// Groups that must not be present.
    #[serde(default)]
    pub groups_exclude: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UnauthorizedExpect {
    pub cause: Spanned<super::cause::Cause>,
}
