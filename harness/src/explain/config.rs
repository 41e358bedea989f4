//! The API server's JWT authentication as the user has it, in one shape: from an
//! `AuthenticationConfiguration` file, from `--oidc-*` flags (a string, or read out of a
//! kube-apiserver static pod manifest). Validated as the API server validates it at start:
//! a config it would refuse is an [`InputError`] that says which field and why.

use super::InputError;
use super::cel::{self, Vars, Want};
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
    /// `egressSelectorType`, when set.
    pub egress_selector: Option<String>,
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
//
// Decoded as the API server decodes it: strictly (unknown fields refused), JSON types (a
// number is not a string), `null` as the zero value, and an empty string as "not set"
// (the Go fields are plain strings; only `prefix` is a pointer).

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    api_version: String,
    kind: String,
    #[serde(default, deserialize_with = "nullable")]
    jwt: Vec<FileJwt>,
    #[serde(default)]
    #[allow(dead_code)]
    anonymous: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileJwt {
    #[serde(default, deserialize_with = "nullable")]
    issuer: FileIssuer,
    #[serde(default, deserialize_with = "nullable")]
    claim_validation_rules: Vec<FileClaimRule>,
    #[serde(default, deserialize_with = "nullable")]
    claim_mappings: FileMappings,
    #[serde(default, deserialize_with = "nullable")]
    user_validation_rules: Vec<FileUserRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileIssuer {
    url: Option<String>,
    #[serde(rename = "discoveryURL")]
    discovery_url: Option<String>,
    certificate_authority: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    audiences: Vec<String>,
    audience_match_policy: Option<String>,
    egress_selector_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileClaimRule {
    claim: Option<String>,
    required_value: Option<String>,
    expression: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileMappings {
    #[serde(default, deserialize_with = "nullable")]
    username: FilePrefixed,
    groups: Option<FilePrefixed>,
    uid: Option<FileClaimOrExpr>,
    #[serde(default, deserialize_with = "nullable")]
    extra: Vec<FileExtra>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilePrefixed {
    claim: Option<String>,
    prefix: Option<String>,
    expression: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileClaimOrExpr {
    claim: Option<String>,
    expression: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileExtra {
    key: Option<String>,
    value_expression: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileUserRule {
    expression: Option<String>,
    message: Option<String>,
}

/// `null` is the zero value, as in Go.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A Go string field: empty means not set.
fn set(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

const GROUP: &str = "apiserver.config.k8s.io";

/// kubeadm's `--service-account-issuer`: the API server refuses a JWT issuer equal to one of
/// its service-account issuers when it builds the authenticator.
pub const KUBEADM_SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Parse and validate an `AuthenticationConfiguration`.
pub fn from_config(
    text: &str,
    origin: &str,
    minor: K8sVersion,
) -> Result<Vec<Authenticator>, InputError> {
    let undecodable = |e: String| {
        InputError(format!(
            "{origin}: the API server would refuse this AuthenticationConfiguration (decoding is strict): {}",
            crate::input_file::redact_values(&e)
        ))
    };
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| undecodable(crate::input_file::yaml_error(&e)))?;
    let cfg: FileConfig = serde_json::from_value(value).map_err(|e| undecodable(e.to_string()))?;
    // Fields a minor's schema does not have yet are unknown fields to it.
    if minor.minor < 34
        && let Some(i) = cfg
            .jwt
            .iter()
            .position(|j| j.issuer.egress_selector_type.is_some())
    {
        return Err(undecodable(format!(
            "strict decoding error: unknown field \"jwt[{i}].issuer.egressSelectorType\" (Kubernetes {minor} has no egressSelectorType; it came in 1.34)"
        )));
    }
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
    refused(origin, std::mem::take(&mut errs))?;
    if cfg.jwt.len() > 64 {
        return refused(
            origin,
            vec![format!(
                "jwt: Too many: {}: must have at most 64 items",
                cfg.jwt.len()
            )],
        )
        .map(|()| Vec::new());
    }
    let mut out = Vec::new();
    let mut seen_urls: Vec<String> = Vec::new();
    let mut seen_discovery: Vec<String> = Vec::new();
    for (i, j) in cfg.jwt.into_iter().enumerate() {
        let path = format!("jwt[{i}]");
        let url = j.issuer.url.clone().unwrap_or_default();
        let discovery = j.issuer.discovery_url.clone().unwrap_or_default();
        match jwt_entry(j, &path, minor.minor) {
            Ok(a) => out.push(a),
            Err(mut e) => errs.append(&mut e),
        }
        if seen_urls.contains(&url) {
            errs.push(format!("{path}.issuer.url: Duplicate value: {url:?}"));
        }
        seen_urls.push(url);
        if !discovery.is_empty() {
            if seen_discovery.contains(&discovery) {
                errs.push(format!(
                    "{path}.issuer.discoveryURL: Duplicate value: {discovery:?}"
                ));
            }
            seen_discovery.push(discovery);
        }
    }
    refused(origin, errs)?;
    // Passed validation; building the authenticators refuses these too, so the API server
    // does not start either.
    let mut late = Vec::new();
    for a in &out {
        if a.issuer_url == KUBEADM_SA_ISSUER {
            late.push(format!(
                "{}.issuer.url: Invalid value: {:?}: URL must not overlap with disallowed issuers: [{KUBEADM_SA_ISSUER}] (kubeadm's --service-account-issuer; the API server refuses its own service-account issuers)",
                a.label, a.issuer_url
            ));
        }
        if let Some(e) = &a.egress_selector {
            late.push(format!(
                "{}.issuer.egressSelectorType: Invalid value: {e:?}: oidc: egress lookup required with egress selector type {e:?} (the API server refuses to start unless --egress-selector-config-file configures that egress)",
                a.label
            ));
        }
    }
    refused(origin, late)?;
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

fn jwt_entry(j: FileJwt, path: &str, minor: u32) -> Result<Authenticator, Vec<String>> {
    let mut errs = Vec::new();
    let iss = &j.issuer;
    let url = iss.url.clone().unwrap_or_default();
    if url.is_empty() {
        errs.push(format!("{path}.issuer.url: Required value"));
    } else {
        check_url(&url, &format!("{path}.issuer.url"), &mut errs);
    }
    if let Some(d) = set(&iss.discovery_url) {
        if !url.is_empty() && d.trim_end_matches('/') == url.trim_end_matches('/') {
            errs.push(format!(
                "{path}.issuer.discoveryURL: Invalid value: {d:?}: discoveryURL must be different from URL"
            ));
        }
        check_url(d, &format!("{path}.issuer.discoveryURL"), &mut errs);
    }
    if iss.audiences.is_empty() {
        errs.push(format!(
            "{path}.issuer.audiences: Required value: at least one {path}.issuer.audiences is required"
        ));
    }
    for (k, a) in iss.audiences.iter().enumerate() {
        if a.is_empty() {
            errs.push(format!("{path}.issuer.audiences[{k}]: Required value"));
        }
        if iss.audiences[..k].contains(a) {
            errs.push(format!(
                "{path}.issuer.audiences[{k}]: Duplicate value: {a:?}"
            ));
        }
    }
    let policy = set(&iss.audience_match_policy);
    match (iss.audiences.len(), policy) {
        (0, _) => {}
        (1, None | Some("MatchAny")) => {}
        (1, Some(p)) => errs.push(format!(
            "{path}.issuer.audienceMatchPolicy: Invalid value: {p:?}: audienceMatchPolicy must be empty or MatchAny for single audience"
        )),
        (_, Some("MatchAny")) => {}
        (_, p) => errs.push(format!(
            "{path}.issuer.audienceMatchPolicy: Invalid value: {:?}: audienceMatchPolicy must be MatchAny for multiple audiences",
            p.unwrap_or("")
        )),
    }
    if let Some(pem) = set(&iss.certificate_authority)
        && let Err(e) = check_ca(pem)
    {
        errs.push(format!(
            "{path}.issuer.certificateAuthority: Invalid value: \"<omitted>\": {e}"
        ));
    }
    if let Some(e) = set(&iss.egress_selector_type)
        && !matches!(e, "controlplane" | "cluster")
    {
        errs.push(format!(
            "{path}.issuer.egressSelectorType: Invalid value: {e:?}: egress selector must be either controlplane or cluster"
        ));
    }
    let mut claim_rules = Vec::new();
    let (mut seen_claims, mut seen_exprs) = (Vec::new(), Vec::new());
    for (k, r) in j.claim_validation_rules.iter().enumerate() {
        let p = format!("{path}.claimValidationRules[{k}]");
        match (set(&r.claim), set(&r.expression)) {
            (Some(_), Some(_)) => errs.push(format!(
                "{p}: Invalid value: claim and expression can't both be set"
            )),
            (None, None) => errs.push(format!(
                "{p}: Required value: claim or expression is required"
            )),
            (Some(c), None) => {
                if set(&r.message).is_some() {
                    errs.push(format!(
                        "{p}.message: Invalid value: may not be specified when claim is set"
                    ));
                }
                if seen_claims.contains(&c) {
                    errs.push(format!("{p}.claim: Duplicate value: {c:?}"));
                }
                seen_claims.push(c);
                claim_rules.push(ClaimRule::Required {
                    claim: c.to_string(),
                    value: r.required_value.clone().unwrap_or_default(),
                });
            }
            (None, Some(e)) => {
                if let Some(v) = set(&r.required_value) {
                    errs.push(format!(
                        "{p}.requiredValue: Invalid value: {v:?}: may not be specified when expression is set"
                    ));
                }
                if seen_exprs.contains(&e) {
                    errs.push(format!("{p}.expression: Duplicate value: {e:?}"));
                    continue;
                }
                seen_exprs.push(e);
                compile(
                    e,
                    Vars::Claims,
                    Want::Bool,
                    minor,
                    &format!("{p}.expression"),
                    &mut errs,
                );
                claim_rules.push(ClaimRule::Expression {
                    expression: e.to_string(),
                    message: set(&r.message).map(str::to_string),
                });
            }
        }
    }
    let m = &j.claim_mappings;
    let username = prefixed(
        &m.username,
        &format!("{path}.claimMappings.username"),
        true,
        minor,
        &mut errs,
    );
    let groups = m.groups.as_ref().and_then(|g| {
        prefixed(
            g,
            &format!("{path}.claimMappings.groups"),
            false,
            minor,
            &mut errs,
        )
    });
    let uid = m.uid.as_ref().and_then(|u| {
        let p = format!("{path}.claimMappings.uid");
        match (set(&u.claim), set(&u.expression)) {
            (Some(_), Some(_)) => {
                errs.push(format!(
                    "{p}: Invalid value: claim and expression can't both be set"
                ));
                None
            }
            (Some(c), None) => Some(Mapping::Claim {
                claim: c.to_string(),
                prefix: String::new(),
            }),
            (None, Some(e)) => {
                compile(
                    e,
                    Vars::Claims,
                    Want::Any,
                    minor,
                    &format!("{p}.expression"),
                    &mut errs,
                );
                Some(Mapping::Expression(e.to_string()))
            }
            (None, None) => None,
        }
    });
    let mut extra = Vec::new();
    let mut seen_keys: Vec<&str> = Vec::new();
    for (k, x) in m.extra.iter().enumerate() {
        let p = format!("{path}.claimMappings.extra[{k}]");
        let key = x.key.as_deref().unwrap_or_default();
        check_extra_key(key, &p, &mut errs);
        if seen_keys.contains(&key) {
            errs.push(format!("{p}.key: Duplicate value: {key:?}"));
            continue;
        }
        seen_keys.push(key);
        let Some(value) = set(&x.value_expression) else {
            errs.push(format!("{p}.valueExpression: Required value"));
            continue;
        };
        compile(
            value,
            Vars::Claims,
            Want::Any,
            minor,
            &format!("{p}.valueExpression"),
            &mut errs,
        );
        extra.push((key.to_string(), value.to_string()));
    }
    // `claims.email` in a username expression needs `claims.email_verified` somewhere. The API
    // server looks for the fields in the compiled expressions (`claims.email`,
    // `has(claims.email)`, `claims.?email`; not `claims['email']`).
    if let Some(Mapping::Expression(e)) = &username
        && cel::check(e, Vars::Claims, Want::Any, minor).is_ok()
        && cel::selects_claim(e, "email")
    {
        let verified = |s: &str, want: Want| {
            cel::check(s, Vars::Claims, want, minor).is_ok()
                && cel::selects_claim(s, "email_verified")
        };
        let elsewhere = verified(e, Want::Any)
            || extra.iter().any(|(_, x)| verified(x, Want::Any))
            || claim_rules.iter().any(|r| match r {
                ClaimRule::Expression { expression, .. } => verified(expression, Want::Bool),
                ClaimRule::Required { .. } => false,
            });
        if !elsewhere {
            errs.push(format!(
                "{path}.claimMappings.username.expression: Invalid value: {e:?}: claims.email_verified must be used in claimMappings.username.expression or claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when claims.email is used in claimMappings.username.expression"
            ));
        }
    }
    let mut user_rules = Vec::new();
    let mut seen_user: Vec<&str> = Vec::new();
    for (k, r) in j.user_validation_rules.iter().enumerate() {
        let p = format!("{path}.userValidationRules[{k}].expression");
        let Some(e) = set(&r.expression) else {
            errs.push(format!("{p}: Required value"));
            continue;
        };
        if seen_user.contains(&e) {
            errs.push(format!("{p}: Duplicate value: {e:?}"));
            continue;
        }
        seen_user.push(e);
        compile(e, Vars::User, Want::Bool, minor, &p, &mut errs);
        user_rules.push(UserRule {
            expression: e.to_string(),
            message: set(&r.message).map(str::to_string),
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
    let ca = set(&iss.certificate_authority).map(str::to_string);
    Ok(Authenticator {
        label: path.to_string(),
        issuer_url: url,
        discovery_url: set(&iss.discovery_url).map(str::to_string),
        audiences: iss.audiences.clone(),
        audience_match_policy: policy.map(str::to_string),
        ca_origin: if ca.is_some() {
            format!("{path}.issuer.certificateAuthority")
        } else {
            "the system roots (no certificateAuthority)".into()
        },
        ca_pem: ca,
        signing_algs: ALL_SIGNING_ALGS.iter().map(|s| s.to_string()).collect(),
        legacy_flags: false,
        claim_rules,
        username,
        groups,
        uid,
        extra,
        user_rules,
        egress_selector: set(&iss.egress_selector_type).map(str::to_string),
    })
}

/// Go's `cert.NewPoolFromBytes`: PEM blocks of type CERTIFICATE, each a parsable X.509
/// certificate, at least one.
fn check_ca(pem: &str) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut n = 0;
    for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = der.map_err(|e| format!("error reading certificate: {e}"))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("x509: malformed certificate ({e})"))?;
        n += 1;
    }
    if n == 0 {
        return Err("data does not contain any valid RSA or ECDSA certificates".into());
    }
    Ok(())
}

fn prefixed(
    p: &FilePrefixed,
    path: &str,
    required: bool,
    minor: u32,
    errs: &mut Vec<String>,
) -> Option<Mapping> {
    match (set(&p.claim), set(&p.expression)) {
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
                claim: c.to_string(),
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
            compile(
                e,
                Vars::Claims,
                Want::Any,
                minor,
                &format!("{path}.expression"),
                errs,
            );
            Some(Mapping::Expression(e.to_string()))
        }
    }
}

fn compile(expr: &str, vars: Vars, want: Want, minor: u32, path: &str, errs: &mut Vec<String>) {
    if let Err(e) = cel::check(expr, vars, want, minor) {
        if e.starts_with(cel::INTERNAL) {
            errs.push(format!("{path}: Internal error: {e}"));
            return;
        }
        errs.push(format!("{path}: Invalid value: {expr:?}: {e}"));
    }
}

pub(super) fn check_url(u: &str, path: &str, errs: &mut Vec<String>) {
    if u.is_empty() {
        errs.push(format!("{path}: Required value"));
        return;
    }
    match super::go_url::parse(u) {
        Err(e) => errs.push(format!("{path}: Invalid value: {u:?}: {e}")),
        Ok(p) => {
            if p.scheme != "https" {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL scheme must be https"
                ));
            }
            if p.has_user {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL must not contain a username or password"
                ));
            }
            if !p.raw_query.is_empty() {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL must not contain a query"
                ));
            }
            if !p.fragment.is_empty() {
                errs.push(format!(
                    "{path}: Invalid value: {u:?}: URL must not contain a fragment"
                ));
            }
        }
    }
}

/// `IsDomainPrefixedPath`, lowercase, and the reserved domains.
fn check_extra_key(key: &str, path: &str, errs: &mut Vec<String>) {
    let p = format!("{path}.key");
    if key.is_empty() {
        errs.push(format!("{p}: Required value"));
        return;
    }
    match key.split_once('/') {
        Some((domain, rest)) if !domain.is_empty() && !rest.is_empty() => {
            if let Err(e) = dns1123_subdomain(domain) {
                errs.push(format!("{p}: Invalid value: {domain:?}: {e}"));
            }
            let path_ok = rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b));
            if !path_ok {
                errs.push(format!(
                    "{p}: Invalid value: {rest:?}: Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"
                ));
            }
        }
        _ => errs.push(format!(
            "{p}: Invalid value: {key:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"
        )),
    }
    if key != key.to_lowercase() {
        errs.push(format!("{p}: Invalid value: {key:?}: must be lowercase"));
    }
    let domain = key.split('/').next().unwrap_or_default();
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

/// `IsDNS1123Subdomain`.
fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
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
