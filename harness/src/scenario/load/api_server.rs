//! The `apiServer:` section: exactly one mode, the structured authenticators (audiences,
//! claim rules, mappings, placeholders) and the `--oidc-*` flags.

use super::*;

/// API server authentication: exactly one mode, each checked on its own.
pub(super) fn check_api_server(
    c: &mut Checker<'_>,
    api: &Spanned<ApiServerAuth>,
    known: &Known<'_>,
) {
    match (&api.value.structured, &api.value.legacy_flags) {
        (Some(_), Some(l)) => {
            c.err(l.referenced, c.api_field.clone(), "`structured` and `legacyFlags` are mutually exclusive")
                .help = Some("kube-apiserver refuses `--authentication-config` together with any `--oidc-*` flag; keep one".into());
        }
        (None, None) => {
            c.err(api.referenced, c.api_field.clone(), "no authentication configured")
                .help = Some("add `structured:` (AuthenticationConfiguration) or `legacyFlags:` (--oidc-* flags)".into());
        }
        (Some(st), None) => {
            if st.value.jwt.is_empty() {
                c.err(
                    st.referenced,
                    format!("{}.structured.jwt", c.api_field),
                    "at least one JWT authenticator is required",
                );
            }
            for (i, j) in st.value.jwt.iter().enumerate() {
                check_jwt(c, i, j, known);
            }
        }
        (None, Some(l)) => check_legacy_flags(c, l, known),
    }
}

/// One structured JWT authenticator.
pub(super) fn check_jwt(c: &mut Checker<'_>, i: usize, j: &JwtAuthenticator, known: &Known<'_>) {
    let (clients, persons) = (&known.clients, &known.persons);
    let f = format!("{}.structured.jwt[{i}]", c.api_field);
    let loc = j.issuer.client.referenced;
    c.reference(
        &j.issuer.client,
        &format!("{f}.issuer.client"),
        "OAuth2 client",
        clients,
        "kanidm.oauth2Clients",
    );
    if let Some(u) = &j.issuer.url_override {
        c.placeholders(u, loc, &format!("{f}.issuer.urlOverride"), clients, persons);
    }
    check_audiences(c, &f, j);
    mapping(
        c,
        loc,
        &format!("{f}.claimMappings.username"),
        &j.claim_mappings.username,
        true,
    );
    if let Some(g) = &j.claim_mappings.groups {
        mapping(c, loc, &format!("{f}.claimMappings.groups"), g, false);
    }
    let uses_email = j
        .claim_mappings
        .username
        .expression
        .as_deref()
        .is_some_and(|e| e.contains("claims.email"));
    let mentions_verified = j
        .claim_mappings
        .username
        .expression
        .iter()
        .chain(j.claim_mappings.extra.iter().map(|e| &e.value_expression))
        .chain(
            j.claim_validation_rules
                .iter()
                .filter_map(|r| r.expression.as_ref()),
        )
        .any(|e| e.contains("claims.email_verified") || e.contains("claims.?email_verified"));
    if uses_email && !mentions_verified {
        c.err(loc, format!("{f}.claimMappings.username.expression"), "uses claims.email but never checks claims.email_verified")
            .help = Some("the API server rejects this config; add e.g. a claimValidationRule `claims.?email_verified.orValue(true) == true`".into());
    }
    check_claim_rules(c, &f, j);
    check_jwt_placeholders(c, &f, j, known);
}

/// `audiences` and `audienceMatchPolicy` as the API server accepts them.
pub(super) fn check_audiences(c: &mut Checker<'_>, f: &str, j: &JwtAuthenticator) {
    let loc = j.issuer.client.referenced;
    if let Some(a) = &j.issuer.audiences {
        if a.is_empty() {
            c.err(
                loc,
                format!("{f}.issuer.audiences"),
                "audiences must not be empty",
            );
        }
        match j.issuer.audience_match_policy.as_deref() {
            None | Some("MatchAny") if a.len() <= 1 => {}
            Some("MatchAny") => {}
            None => {
                c.err(
                    loc,
                    format!("{f}.issuer.audienceMatchPolicy"),
                    "several audiences need `audienceMatchPolicy: MatchAny`",
                );
            }
            Some(other) => {
                c.err(
                    loc,
                    format!("{f}.issuer.audienceMatchPolicy"),
                    format!("unknown policy `{other}`; the only value is `MatchAny`"),
                );
            }
        }
    }
}

/// Each claimValidationRule is either `claim`(+`requiredValue`) or `expression`(+`message`).
pub(super) fn check_claim_rules(c: &mut Checker<'_>, f: &str, j: &JwtAuthenticator) {
    let loc = j.issuer.client.referenced;
    for (n, r) in j.claim_validation_rules.iter().enumerate() {
        let rf = format!("{f}.claimValidationRules[{n}]");
        match (&r.claim, &r.expression) {
            (Some(_), Some(_)) => {
                c.err(loc, rf, "`claim` and `expression` can't both be set");
            }
            (None, None) => {
                c.err(loc, rf, "`claim` or `expression` is required");
            }
            (Some(_), None) if r.message.is_some() => {
                c.err(loc, rf, "`message` may not be set with `claim`");
            }
            (None, Some(_)) if r.required_value.is_some() => {
                c.err(loc, rf, "`requiredValue` may not be set with `expression`");
            }
            _ => {}
        }
    }
}

/// The `--oidc-*` flags.
pub(super) fn check_legacy_flags(c: &mut Checker<'_>, l: &Spanned<LegacyFlags>, known: &Known<'_>) {
    let clients = &known.clients;
    c.reference(
        &l.value.client,
        &format!("{}.legacyFlags.client", c.api_field),
        "OAuth2 client",
        clients,
        "kanidm.oauth2Clients",
    );
    for (i, a) in l.value.signing_algs.iter().enumerate() {
        if !SIGNING_ALGS.contains(&a.value.as_str()) {
            let e = c.err(
                a.referenced,
                format!("{}.legacyFlags.signingAlgs[{i}]", c.api_field),
                format!("unsupported signing algorithm `{}`", a.value),
            );
            e.help = Some(
                did_you_mean(&a.value, SIGNING_ALGS)
                    .unwrap_or_else(|| format!("one of {}", SIGNING_ALGS.join(", "))),
            );
        }
    }
    for rc in &l.value.required_claims {
        if !rc.contains('=') {
            c.err(
                l.referenced,
                format!("{}.legacyFlags.requiredClaims", c.api_field),
                format!("`{rc}` is not `key=value`"),
            );
        }
    }
    let f = &l.value;
    for v in f
        .username_prefix
        .iter()
        .chain(&f.groups_prefix)
        .chain(&f.client_id)
        .chain(&f.required_claims)
    {
        c.placeholders(
            v,
            l.referenced,
            &format!("{}.legacyFlags", c.api_field),
            &known.clients,
            &known.persons,
        );
    }
}

/// The values of one API server section (top level or a step's).
pub(super) fn check_api_values(c: &mut Checker<'_>, api: &ApiServerAuth) {
    if let Some(st) = &api.structured {
        for (i, j) in st.value.jwt.iter().enumerate() {
            let f = format!("{}.structured.jwt[{i}]", c.api_field);
            let loc = j.issuer.client.referenced;
            if let Some(u) = &j.issuer.url_override
                && !(u.starts_with("${") || u.starts_with("https://"))
            {
                c.err(
                    loc,
                    format!("{f}.issuer.urlOverride"),
                    format!("`{}` is not an https URL", u.escape_debug()),
                )
                .help =
                    Some("the API server requires an https issuer, e.g. `${issuer:k8s}/`".into());
            }
            let m = &j.claim_mappings;
            let claims = [
                m.username.claim.as_ref(),
                m.groups.as_ref().and_then(|g| g.claim.as_ref()),
                m.uid.as_ref().and_then(|u| u.claim.as_ref()),
            ];
            for claim in claims.into_iter().flatten() {
                if claim.is_empty() || claim.chars().any(char::is_whitespace) {
                    c.err(
                        loc,
                        format!("{f}.claimMappings"),
                        format!("`{}` is not a claim name", claim.escape_debug()),
                    )
                    .help = Some("a claim name is one word, e.g. `preferred_username`".into());
                }
            }
        }
    }
}

/// Placeholders in every field the renderer resolves: claim mappings, CEL expressions,
/// rule values and messages, audiences (a `${` there reaches the API server resolved).
pub(super) fn check_jwt_placeholders(
    c: &mut Checker<'_>,
    f: &str,
    j: &JwtAuthenticator,
    known: &Known<'_>,
) {
    let loc = j.issuer.client.referenced;
    let texts = j.placeholder_texts();
    for (field, t) in texts {
        c.placeholders(
            t,
            loc,
            &format!("{f}.{field}"),
            &known.clients,
            &known.persons,
        );
    }
}

pub(super) fn mapping(
    c: &mut Checker<'_>,
    loc: Location,
    field: &str,
    m: &PrefixedClaimOrExpression,
    required: bool,
) {
    match (&m.claim, &m.expression) {
        (Some(_), Some(_)) => {
            c.err(loc, field, "`claim` and `expression` can't both be set");
        }
        (None, None) if required => {
            c.err(loc, field, "`claim` or `expression` is required");
        }
        (Some(_), None) if m.prefix.is_none() => {
            c.err(
                loc,
                format!("{field}.prefix"),
                "`prefix` is required when `claim` is set",
            )
            .help = Some(
                "use `prefix: \"\"` for no prefix (the API server has no default here)".into(),
            );
        }
        (None, Some(_)) if m.prefix.is_some() => {
            c.err(
                loc,
                format!("{field}.prefix"),
                "`prefix` may not be set with `expression`",
            );
        }
        _ => {}
    }
}
