//! The API server's JWT authentication as the user has it, in one shape: from an
//! `AuthenticationConfiguration` file, from `--oidc-*` flags (a string, or read out of a
//! kube-apiserver static pod manifest). Validated as the API server validates it at start:
//! a config it would refuse is an [`InputError`] that says which field and why.

use super::InputError;
use super::cel::{self, Vars};
use crate::render::K8sVersion;
use serde::Deserialize;

/// Every signing algorithm go-oidc knows; structured configuration allows all of them.
pub const ALL_SIGNING_ALGS: [&str; 9] = [
    "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512",
];

/// One JWT authenticator, as the API server builds it from either source.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticator {
    /// Where it came from: `jwt[0]` or `--oidc-* flags`.
    pub label: String,
    pub issuer_url: String,
    pub discovery_url: Option<String>,
    pub audiences: Vec<String>,
    pub audience_match_policy: Option<String>,
    /// PEM of the CA the API server trusts for discovery; `None` = the system roots.
    pub ca_pem: Option<String>,
    /// Where that CA came from, for the report.
    pub ca_origin: String,
    pub signing_algs: Vec<String>,
    pub legacy_flags: bool,
    pub claim_rules: Vec<ClaimRule>,
    pub username: Mapping,
    pub groups: Option<Mapping>,
    pub uid: Option<Mapping>,
    pub extra: Vec<(String, String)>,
    pub user_rules: Vec<UserRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimRule {
    Required {
        claim: String,
        value: String,
    },
    Expression {
        expression: String,
        message: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRule {
    pub expression: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mapping {
    Claim { claim: String, prefix: String },
    Expression(String),
}

// ---- AuthenticationConfiguration -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    jwt: Vec<FileJwt>,
    #[serde(default)]
    #[allow(dead_code)]
    anonymous: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileJwt {
    issuer: FileIssuer,
    #[serde(default)]
    claim_validation_rules: Vec<FileClaimRule>,
    claim_mappings: FileMappings,
    #[serde(default)]
    user_validation_rules: Vec<FileUserRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileIssuer {
    #[serde(default)]
    url: String,
    #[serde(rename = "discoveryURL")]
    discovery_url: Option<String>,
    certificate_authority: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    audience_match_policy: Option<String>,
    egress_selector_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileClaimRule {
    claim: Option<String>,
    required_value: Option<String>,
    expression: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileMappings {
    username: FilePrefixed,
    groups: Option<FilePrefixed>,
    uid: Option<FileClaimOrExpr>,
    #[serde(default)]
    extra: Vec<FileExtra>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePrefixed {
    claim: Option<String>,
    prefix: Option<String>,
    expression: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClaimOrExpr {
    claim: Option<String>,
    expression: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileExtra {
    key: String,
    #[serde(default)]
    value_expression: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUserRule {
    #[serde(default)]
    expression: String,
    message: Option<String>,
}

const GROUP: &str = "apiserver.config.k8s.io";

/// Parse and validate an `AuthenticationConfiguration`.
pub fn from_config(
    text: &str,
    origin: &str,
    minor: K8sVersion,
) -> Result<Vec<Authenticator>, InputError> {
    let cfg: FileConfig = serde_saphyr::from_str(text).map_err(|e| {
        InputError(format!(
            "{origin}: the API server would refuse this AuthenticationConfiguration (decoding is strict): {e}"
        ))
    })?;
    let mut errs = Vec::new();
    if cfg.kind != "AuthenticationConfiguration" {
        errs.push(format!(
            "kind: {:?}; write `kind: AuthenticationConfiguration`",
            cfg.kind
        ));
    }
    let version_ok = match cfg.api_version.strip_prefix(&format!("{GROUP}/")) {
        Some("v1alpha1") => true,
        Some("v1beta1") => minor.minor >= 30,
        Some("v1") => minor.minor >= 34,
        _ => false,
    };
    if !version_ok {
        errs.push(format!(
            "apiVersion: Kubernetes {minor} does not serve {:?}; write `apiVersion: {}`",
            cfg.api_version,
            minor
                .authn_config_api_version()
                .unwrap_or("apiserver.config.k8s.io/v1beta1")
        ));
    }
    if cfg.jwt.len() > 64 {
        errs.push(format!("jwt: {} authenticators, at most 64", cfg.jwt.len()));
    }
    let mut out = Vec::new();
    for (i, j) in cfg.jwt.into_iter().enumerate() {
        let path = format!("jwt[{i}]");
        match jwt_entry(j, &path) {
            Ok(a) => out.push(a),
            Err(mut e) => errs.append(&mut e),
        }
    }
    for (i, a) in out.iter().enumerate() {
        if out[..i].iter().any(|b| b.issuer_url == a.issuer_url) {
            errs.push(format!(
                "jwt[{i}].issuer.url: Duplicate value: {:?}",
                a.issuer_url
            ));
        }
    }
    refused(origin, errs)?;
    Ok(out)
}

pub(super) fn refused(origin: &str, errs: Vec<String>) -> Result<(), InputError> {
    if errs.is_empty() {
        return Ok(());
    }
    Err(InputError(format!(
        "{origin}: the API server would refuse this configuration (invalid authentication configuration):\n  {}",
        errs.join("\n  ")
    )))
}

fn jwt_entry(j: FileJwt, path: &str) -> Result<Authenticator, Vec<String>> {
    let mut errs = Vec::new();
    let iss = &j.issuer;
    check_url(&iss.url, &format!("{path}.issuer.url"), &mut errs);
    if let Some(d) = &iss.discovery_url {
        check_url(d, &format!("{path}.issuer.discoveryURL"), &mut errs);
        if d.trim_end_matches('/') == iss.url.trim_end_matches('/') {
            errs.push(format!(
                "{path}.issuer.discoveryURL: Invalid value: discoveryURL must be different from URL"
            ));
        }
    }
    if iss.audiences.is_empty() {
        errs.push(format!(
            "{path}.issuer.audiences: Required value: at least one {path}.issuer.audiences is required"
        ));
    }
    for (k, a) in iss.audiences.iter().enumerate() {
        if a.is_empty() {
            errs.push(format!("{path}.issuer.audiences[{k}]: Required value"));
        } else if iss.audiences[..k].contains(a) {
            errs.push(format!(
                "{path}.issuer.audiences[{k}]: Duplicate value: {a:?}"
            ));
        }
    }
    match (iss.audiences.len(), iss.audience_match_policy.as_deref()) {
        (0 | 1, None | Some("") | Some("MatchAny")) => {}
        (0 | 1, Some(p)) => errs.push(format!(
            "{path}.issuer.audienceMatchPolicy: Invalid value: {p:?}: audienceMatchPolicy must be empty or MatchAny for single audience"
        )),
        (_, Some("MatchAny")) => {}
        (_, p) => errs.push(format!(
            "{path}.issuer.audienceMatchPolicy: Invalid value: {:?}: audienceMatchPolicy must be MatchAny for multiple audiences",
            p.unwrap_or("")
        )),
    }
    if let Some(e) = iss.egress_selector_type.as_deref()
        && !matches!(e, "controlplane" | "cluster")
    {
        errs.push(format!(
            "{path}.issuer.egressSelectorType: Invalid value: {e:?}: egress selector must be either controlplane or cluster"
        ));
    }
    if let Some(pem) = &iss.certificate_authority
        && reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map(|v| v.is_empty())
            .unwrap_or(true)
    {
        errs.push(format!(
            "{path}.issuer.certificateAuthority: Invalid value: \"<omitted>\": not PEM certificates"
        ));
    }
    let mut claim_rules = Vec::new();
    for (k, r) in j.claim_validation_rules.iter().enumerate() {
        let p = format!("{path}.claimValidationRules[{k}]");
        match (&r.claim, &r.expression) {
            (Some(_), Some(_)) => errs.push(format!(
                "{p}: Invalid value: claim and expression can't both be set"
            )),
            (None, None) => errs.push(format!(
                "{p}: Required value: claim or expression is required"
            )),
            (Some(c), None) => {
                if r.message.is_some() {
                    errs.push(format!(
                        "{p}.message: Invalid value: may not be specified when claim is set"
                    ));
                }
                claim_rules.push(ClaimRule::Required {
                    claim: c.clone(),
                    value: r.required_value.clone().unwrap_or_default(),
                });
            }
            (None, Some(e)) => {
                if r.required_value.is_some() {
                    errs.push(format!(
                        "{p}.requiredValue: Invalid value: may not be specified when expression is set"
                    ));
                }
                compile(e, Vars::Claims, &format!("{p}.expression"), &mut errs);
                claim_rules.push(ClaimRule::Expression {
                    expression: e.clone(),
                    message: r.message.clone(),
                });
            }
        }
    }
    let m = &j.claim_mappings;
    let username = prefixed(
        &m.username,
        &format!("{path}.claimMappings.username"),
        true,
        &mut errs,
    );
    let groups = m
        .groups
        .as_ref()
        .and_then(|g| prefixed(g, &format!("{path}.claimMappings.groups"), false, &mut errs));
    let uid = m.uid.as_ref().and_then(|u| {
        let p = format!("{path}.claimMappings.uid");
        match (&u.claim, &u.expression) {
            (Some(_), Some(_)) => {
                errs.push(format!(
                    "{p}: Invalid value: claim and expression can't both be set"
                ));
                None
            }
            (Some(c), None) => Some(Mapping::Claim {
                claim: c.clone(),
                prefix: String::new(),
            }),
            (None, Some(e)) => {
                compile(e, Vars::Claims, &format!("{p}.expression"), &mut errs);
                Some(Mapping::Expression(e.clone()))
            }
            (None, None) => None,
        }
    });
    let mut extra = Vec::new();
    for (k, x) in m.extra.iter().enumerate() {
        let p = format!("{path}.claimMappings.extra[{k}]");
        check_extra_key(&x.key, &p, &mut errs);
        if m.extra[..k].iter().any(|y| y.key == x.key) {
            errs.push(format!("{p}.key: Duplicate value: {:?}", x.key));
        }
        if x.value_expression.is_empty() {
            errs.push(format!("{p}.valueExpression: Required value"));
        } else {
            compile(
                &x.value_expression,
                Vars::Claims,
                &format!("{p}.valueExpression"),
                &mut errs,
            );
        }
        extra.push((x.key.clone(), x.value_expression.clone()));
    }
    // `claims.email` in a username expression needs `claims.email_verified` somewhere.
    if let Some(Mapping::Expression(e)) = &username
        && mentions_email(e)
    {
        let verified = |s: &str| s.contains("email_verified");
        let elsewhere = verified(e)
            || m.extra.iter().any(|x| verified(&x.value_expression))
            || j.claim_validation_rules
                .iter()
                .any(|r| r.expression.as_deref().is_some_and(verified));
        if !elsewhere {
            errs.push(format!(
                "{path}.claimMappings.username.expression: Invalid value: claims.email_verified must be used in claimMappings.username.expression or claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when claims.email is used in claimMappings.username.expression"
            ));
        }
    }
    let mut user_rules = Vec::new();
    for (k, r) in j.user_validation_rules.iter().enumerate() {
        let p = format!("{path}.userValidationRules[{k}].expression");
        if r.expression.is_empty() {
            errs.push(format!("{p}: Required value"));
            continue;
        }
        compile(&r.expression, Vars::User, &p, &mut errs);
        user_rules.push(UserRule {
            expression: r.expression.clone(),
            message: r.message.clone(),
        });
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let Some(username) = username else {
        return Err(vec![format!(
            "{path}.claimMappings.username: Required value: claim or expression is required"
        )]);
    };
    Ok(Authenticator {
        label: path.to_string(),
        issuer_url: iss.url.clone(),
        discovery_url: iss.discovery_url.clone(),
        audiences: iss.audiences.clone(),
        audience_match_policy: iss.audience_match_policy.clone().filter(|p| !p.is_empty()),
        ca_pem: iss.certificate_authority.clone(),
        ca_origin: if iss.certificate_authority.is_some() {
            format!("{path}.issuer.certificateAuthority")
        } else {
            "the system roots (no certificateAuthority)".into()
        },
        signing_algs: ALL_SIGNING_ALGS.iter().map(|s| s.to_string()).collect(),
        legacy_flags: false,
        claim_rules,
        username,
        groups,
        uid,
        extra,
        user_rules,
    })
}

/// `claims.email` as a field (not `claims.email_verified`).
fn mentions_email(e: &str) -> bool {
    ["claims.email", "claims.?email"].iter().any(|field| {
        e.match_indices(field)
            .any(|(i, _)| !e[i + field.len()..].starts_with('_'))
    })
}

fn prefixed(
    p: &FilePrefixed,
    path: &str,
    required: bool,
    errs: &mut Vec<String>,
) -> Option<Mapping> {
    match (&p.claim, &p.expression) {
        (Some(_), Some(_)) => {
            errs.push(format!(
                "{path}: Invalid value: claim and expression can't both be set"
            ));
            None
        }
        (None, None) => {
            if required {
                errs.push(format!(
                    "{path}: Required value: claim or expression is required"
                ));
            }
            None
        }
        (Some(c), None) => match &p.prefix {
            Some(prefix) => Some(Mapping::Claim {
                claim: c.clone(),
                prefix: prefix.clone(),
            }),
            None => {
                errs.push(format!(
                    "{path}.prefix: Required value: prefix is required when claim is set. It can be set to an empty string to disable prefixing"
                ));
                None
            }
        },
        (None, Some(e)) => {
            if p.prefix.is_some() {
                errs.push(format!(
                    "{path}.prefix: Invalid value: may not be specified when expression is set"
                ));
            }
            compile(e, Vars::Claims, &format!("{path}.expression"), errs);
            Some(Mapping::Expression(e.clone()))
        }
    }
}

fn compile(expr: &str, vars: Vars, path: &str, errs: &mut Vec<String>) {
    if let Err(e) = cel::check(expr, vars) {
        errs.push(format!("{path}: Invalid value: {expr:?}: {e}"));
    }
}

pub(super) fn check_url(u: &str, path: &str, errs: &mut Vec<String>) {
    if u.is_empty() {
        errs.push(format!("{path}: Required value"));
        return;
    }
    match url::Url::parse(u) {
        Err(e) => errs.push(format!("{path}: Invalid value: {u:?}: {e}")),
        Ok(p) => {
            if p.scheme() != "https" {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL scheme must be https"
                ));
            }
            if !p.username().is_empty() || p.password().is_some() {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL must not contain a username or password"
                ));
            }
            if p.query().is_some() {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL must not contain a query"
                ));
            }
            if p.fragment().is_some() {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL must not contain a fragment"
                ));
            }
        }
    }
}

fn check_extra_key(key: &str, path: &str, errs: &mut Vec<String>) {
    let p = format!("{path}.key");
    if key.is_empty() {
        errs.push(format!("{p}: Required value"));
        return;
    }
    if key != key.to_lowercase() {
        errs.push(format!(
            "{p}: Invalid value: {key:?}: key must be lowercase"
        ));
    }
    let Some((domain, _)) = key.split_once('/') else {
        errs.push(format!(
            "{p}: Invalid value: {key:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"
        ));
        return;
    };
    let reserved = |d: &str| {
        d == "k8s.io"
            || d.ends_with(".k8s.io")
            || d == "kubernetes.io"
            || d.ends_with(".kubernetes.io")
    };
    if reserved(domain) {
        errs.push(format!(
            "{p}: Invalid value: {key:?}: k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(m: u32) -> K8sVersion {
        K8sVersion { minor: m }
    }

    const GOOD: &str = r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer:
      url: https://idm.example.com/oauth2/openid/k8s
      audiences: [k8s]
    claimMappings:
      username: {claim: preferred_username, prefix: ""}
      groups: {claim: groups, prefix: "oidc:"}
"#;

    #[test]
    fn structured_config_loads() {
        let a = from_config(GOOD, "a.yaml", v(36)).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].signing_algs.len(), 9);
        assert_eq!(
            a[0].groups,
            Some(Mapping::Claim {
                claim: "groups".into(),
                prefix: "oidc:".into()
            })
        );
        let err = from_config(GOOD, "a.yaml", v(33)).unwrap_err().0;
        assert!(err.contains("Kubernetes 1.33 does not serve"), "{err}");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                GOOD.replace("prefix: \"\"", "x: 1").replace(
                    "{claim: preferred_username, x: 1}",
                    "{claim: preferred_username}",
                ),
                "username.prefix: Required value",
            ),
            (
                GOOD.replace("https://idm", "http://idm"),
                "URL scheme must be https",
            ),
            (
                GOOD.replace("audiences: [k8s]", "audiences: []"),
                "audiences is required",
            ),
            (
                GOOD.replace(
                    "audiences: [k8s]",
                    "audiences: [a, b]\n      audienceMatchPolicy: Exact",
                ),
                "must be MatchAny for multiple",
            ),
            (
                GOOD.replace("kind: Auth", "kinds: x\nkind: Auth"),
                "decoding is strict",
            ),
            (
                GOOD.replace(
                    "{claim: preferred_username, prefix: \"\"}",
                    "{expression: \"claims.email\"}",
                ),
                "claims.email_verified must be used",
            ),
            (
                GOOD.replace(
                    "{claim: preferred_username, prefix: \"\"}",
                    "{expression: \"claims.sub +\"}",
                ),
                "username.expression: Invalid value",
            ),
            (
                GOOD.replace(
                    "{claim: preferred_username, prefix: \"\"}",
                    "{expression: \"claim.sub\"}",
                ),
                "undeclared reference to 'claim'",
            ),
        ];
        for (text, want) in cases {
            let err = from_config(&text, "a.yaml", v(36)).unwrap_err().0;
            assert!(err.contains(want), "want {want:?} in:\n{err}");
        }
        let ok = GOOD.replace(
            "{claim: preferred_username, prefix: \"\"}",
            "{expression: \"claims.email\"}",
        ) + "    claimValidationRules:\n      - expression: \"claims.?email_verified.orValue(true) == true\"\n";
        from_config(&ok, "a.yaml", v(36)).unwrap();
    }
}
