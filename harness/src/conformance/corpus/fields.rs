//! Whole configurations: every field with its bad values, and YAML 1.1 scalars.

use super::*;

/// Whole-configuration cases: each field with its bad values.
pub(super) fn fields(minor: u32, out: &mut Vec<Case>) {
    let base = || document(minor, vec![base_jwt(ISSUER)]);
    let mut push = |name: &str, doc: Value| {
        out.push(Case {
            name: format!("field-{name}"),
            source: "generated: fields".into(),
            kind: CaseKind::Config(doc),
        });
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut d = base();
        f(&mut d);
        d
    };
    push("base", base());
    for v in [
        "apiserver.config.k8s.io/v1alpha1",
        "apiserver.config.k8s.io/v1beta1",
        "apiserver.config.k8s.io/v1",
        "apiserver.config.k8s.io/v2",
        "apiserver.config.k8s.io",
        "v1",
        "",
    ] {
        push(
            &format!("apiVersion-{v}"),
            with(&|d| d["apiVersion"] = json!(v)),
        );
    }
    push(
        "kind-wrong",
        with(&|d| d["kind"] = json!("AuthorizationConfiguration")),
    );
    push(
        "kind-missing",
        with(&|d| {
            d.as_object_mut().map(|o| o.remove("kind"));
        }),
    );
    push("unknown-top-field", with(&|d| d["jwts"] = json!([])));
    push(
        "unknown-jwt-field",
        with(&|d| d["jwt"][0]["claimMapping"] = json!({})),
    );
    push(
        "unknown-issuer-field",
        with(&|d| d["jwt"][0]["issuer"]["audience"] = json!("k8s")),
    );
    push(
        "audiences-as-string",
        with(&|d| d["jwt"][0]["issuer"]["audiences"] = json!("k8s")),
    );
    push(
        "url-as-number",
        with(&|d| d["jwt"][0]["issuer"]["url"] = json!(1)),
    );
    push("jwt-empty", with(&|d| d["jwt"] = json!([])));
    push("jwt-null", with(&|d| d["jwt"] = Value::Null));
    for (n, u) in [
        ("empty", ""),
        ("http", "http://issuer.example/oauth2/openid/k8s"),
        ("userinfo", "https://u:p@issuer.example/x"),
        ("query", "https://issuer.example/x?a=1"),
        ("fragment", "https://issuer.example/x#f"),
        ("not-a-url", "issuer.example"),
        ("scheme-only", "https://"),
        ("uppercase-scheme", "HTTPS://issuer.example/x"),
        ("trailing-slash", "https://issuer.example/x/"),
        ("port", "https://issuer.example:8443/x"),
        ("ipv4", "https://127.0.0.1:8443/oauth2/openid/k8s"),
        ("ipv6", "https://[::1]:8443/x"),
        ("unicode-host", "https://ïssuer.example/x"),
        ("space", "https://issuer.example/a b"),
        ("sa-issuer", SA_ISSUER),
        ("localhost", "https://localhost:8443/oauth2/openid/k8s"),
    ] {
        push(
            &format!("url-{n}"),
            with(&|d| d["jwt"][0]["issuer"]["url"] = json!(u)),
        );
    }
    for (n, u) in [
        ("same", ISSUER.to_string()),
        ("same-slash", format!("{ISSUER}/")),
        (
            "http",
            "http://issuer.example/.well-known/openid-configuration".into(),
        ),
        (
            "other",
            "https://discovery.example/.well-known/openid-configuration".into(),
        ),
        ("query", "https://discovery.example/x?a=1".into()),
    ] {
        push(
            &format!("discovery-{n}"),
            with(&|d| d["jwt"][0]["issuer"]["discoveryURL"] = json!(u)),
        );
    }
    for (n, a, p) in [
        ("none", json!([]), None),
        ("empty-string", json!([""]), None),
        ("duplicate", json!(["k8s", "k8s"]), Some("MatchAny")),
        ("two-no-policy", json!(["a", "b"]), None),
        ("two-matchany", json!(["a", "b"]), Some("MatchAny")),
        ("one-matchany", json!(["a"]), Some("MatchAny")),
        ("two-matchall", json!(["a", "b"]), Some("MatchAll")),
        ("one-empty-policy", json!(["a"]), Some("")),
        ("one-bad-policy", json!(["a"]), Some("matchany")),
    ] {
        push(
            &format!("audiences-{n}"),
            with(&|d| {
                d["jwt"][0]["issuer"]["audiences"] = a.clone();
                if let Some(p) = p {
                    d["jwt"][0]["issuer"]["audienceMatchPolicy"] = json!(p);
                }
            }),
        );
    }
    for (n, ca) in [
        ("garbage", "not a certificate"),
        ("empty", ""),
        (
            "key",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHsXJ9Cd2dT6bW1f7mJ3qN7u0d8Q4cZkLr2s1YxYxYxY\n-----END PRIVATE KEY-----\n",
        ),
        (
            "truncated",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ),
    ] {
        push(
            &format!("ca-{n}"),
            with(&|d| d["jwt"][0]["issuer"]["certificateAuthority"] = json!(ca)),
        );
    }
    for e in ["controlplane", "cluster", "etcd", ""] {
        push(
            &format!("egress-{e}"),
            with(&|d| d["jwt"][0]["issuer"]["egressSelectorType"] = json!(e)),
        );
    }
    for (n, rule) in [
        (
            "claim-value",
            json!({"claim": "hd", "requiredValue": "example.com"}),
        ),
        ("claim-only", json!({"claim": "hd"})),
        ("value-only", json!({"requiredValue": "example.com"})),
        (
            "claim-and-expression",
            json!({"claim": "hd", "expression": "true"}),
        ),
        ("claim-and-message", json!({"claim": "hd", "message": "m"})),
        (
            "expression-and-value",
            json!({"expression": "true", "requiredValue": "x"}),
        ),
        ("expression-empty", json!({"expression": ""})),
        ("expression-no-message", json!({"expression": "true"})),
        ("empty", json!({})),
        ("claim-empty", json!({"claim": "", "requiredValue": "x"})),
    ] {
        push(
            &format!("claim-rule-{n}"),
            with(&|d| d["jwt"][0]["claimValidationRules"] = json!([rule.clone()])),
        );
    }
    push(
        "claim-rule-duplicate-claim",
        with(&|d| {
            d["jwt"][0]["claimValidationRules"] = json!([{"claim": "hd", "requiredValue": "a"}, {"claim": "hd", "requiredValue": "b"}]);
        }),
    );
    push(
        "claim-rule-duplicate-expression",
        with(&|d| {
            d["jwt"][0]["claimValidationRules"] =
                json!([{"expression": "true"}, {"expression": "true"}]);
        }),
    );
    for (n, u) in [
        ("missing", Value::Null),
        ("claim-no-prefix", json!({"claim": "sub"})),
        ("claim-empty-prefix", json!({"claim": "sub", "prefix": ""})),
        ("claim-prefix", json!({"claim": "sub", "prefix": "oidc:"})),
        (
            "expression-and-prefix",
            json!({"expression": "claims.sub", "prefix": "x"}),
        ),
        (
            "claim-and-expression",
            json!({"claim": "sub", "expression": "claims.sub", "prefix": ""}),
        ),
        ("empty", json!({})),
        ("claim-empty", json!({"claim": "", "prefix": ""})),
        ("claim-email", json!({"claim": "email", "prefix": ""})),
        ("expression-empty", json!({"expression": ""})),
    ] {
        push(
            &format!("username-{n}"),
            with(&|d| {
                if u.is_null() {
                    d["jwt"][0]["claimMappings"]
                        .as_object_mut()
                        .map(|o| o.remove("username"));
                } else {
                    d["jwt"][0]["claimMappings"]["username"] = u.clone();
                }
            }),
        );
    }
    for (n, g) in [
        ("claim-no-prefix", json!({"claim": "groups"})),
        (
            "claim-prefix",
            json!({"claim": "groups", "prefix": "oidc:"}),
        ),
        (
            "expression-and-prefix",
            json!({"expression": "claims.groups", "prefix": "x"}),
        ),
        ("empty", json!({})),
        ("prefix-only", json!({"prefix": "x"})),
    ] {
        push(
            &format!("groups-{n}"),
            with(&|d| d["jwt"][0]["claimMappings"]["groups"] = g.clone()),
        );
    }
    for (n, u) in [
        ("claim", json!({"claim": "sub"})),
        (
            "claim-and-expression",
            json!({"claim": "sub", "expression": "claims.sub"}),
        ),
        ("prefix", json!({"claim": "sub", "prefix": "x"})),
        ("empty", json!({})),
    ] {
        push(
            &format!("uid-{n}"),
            with(&|d| d["jwt"][0]["claimMappings"]["uid"] = u.clone()),
        );
    }
    for (n, key) in [
        ("ok", "example.com/team"),
        ("uppercase", "Example.com/team"),
        ("no-slash", "team"),
        ("k8s-io", "k8s.io/x"),
        ("kubernetes-io", "kubernetes.io/x"),
        ("sub-k8s-io", "sub.k8s.io/x"),
        (
            "sub-kubernetes-io",
            "authentication.kubernetes.io/credential-id",
        ),
        ("empty", ""),
        ("space", "example.com/a b"),
        ("empty-name", "example.com/"),
        ("empty-domain", "/x"),
        ("two-slashes", "example.com/a/b"),
        ("ip-domain", "10.0.0.1/x"),
        ("underscore", "exa_mple.com/x"),
    ] {
        push(
            &format!("extra-key-{n}"),
            with(&|d| {
                d["jwt"][0]["claimMappings"]["extra"] =
                    json!([{"key": key, "valueExpression": "claims.sub"}]);
            }),
        );
    }
    push(
        "extra-duplicate-key",
        with(&|d| {
            d["jwt"][0]["claimMappings"]["extra"] = json!([{"key": "example.com/a", "valueExpression": "'1'"}, {"key": "example.com/a", "valueExpression": "'2'"}]);
        }),
    );
    push(
        "extra-no-expression",
        with(&|d| {
            d["jwt"][0]["claimMappings"]["extra"] = json!([{"key": "example.com/a"}]);
        }),
    );
    push(
        "user-rule-empty",
        with(&|d| d["jwt"][0]["userValidationRules"] = json!([{"expression": ""}])),
    );
    push(
        "user-rule-duplicate",
        with(&|d| {
            d["jwt"][0]["userValidationRules"] =
                json!([{"expression": "true"}, {"expression": "true"}]);
        }),
    );
    push(
        "two-issuers",
        with(&|d| {
            d["jwt"] = json!([base_jwt(ISSUER), base_jwt("https://other.example/x")]);
        }),
    );
    push(
        "duplicate-issuer",
        with(&|d| d["jwt"] = json!([base_jwt(ISSUER), base_jwt(ISSUER)])),
    );
    push(
        "duplicate-issuer-slash",
        with(&|d| {
            d["jwt"] = json!([base_jwt(ISSUER), base_jwt(&format!("{ISSUER}/"))]);
        }),
    );
    push(
        "jwt-64",
        with(&|d| {
            d["jwt"] = json!(
                (0..64)
                    .map(|i| base_jwt(&format!("{ISSUER}{i}")))
                    .collect::<Vec<_>>()
            );
        }),
    );
    push(
        "jwt-65",
        with(&|d| {
            d["jwt"] = json!(
                (0..65)
                    .map(|i| base_jwt(&format!("{ISSUER}{i}")))
                    .collect::<Vec<_>>()
            );
        }),
    );
    push(
        "anonymous-enabled",
        with(&|d| d["anonymous"] = json!({"enabled": true})),
    );
    push(
        "anonymous-conditions",
        with(&|d| {
            d["anonymous"] = json!({"enabled": true, "conditions": [{"path": "/livez"}]});
        }),
    );
}

/// YAML 1.1 scalars: the API server's YAML reader takes `no`, `on`, `~` and `1.0` as a
/// boolean, null and a number, which a string field refuses.
pub(super) fn yaml(minor: u32, out: &mut Vec<Case>) {
    let head = format!(
        "apiVersion: {}\nkind: AuthenticationConfiguration\njwt:\n",
        api_version(minor)
    );
    let issuer = "- issuer: {url: \"https://issuer.example/x\", audiences: [k8s]}\n";
    let sub = "  claimMappings:\n    username: {claim: sub, prefix: \"\"}\n";
    let cases = [
        ("message-no", format!("{issuer}{sub}  userValidationRules:\n  - {{expression: \"true\", message: no}}\n")),
        ("message-quoted-no", format!("{issuer}{sub}  userValidationRules:\n  - {{expression: \"true\", message: \"no\"}}\n")),
        ("audience-yes", format!("- issuer: {{url: \"https://issuer.example/x\", audiences: [yes]}}\n{sub}")),
        ("audience-number", format!("- issuer: {{url: \"https://issuer.example/x\", audiences: [1.0]}}\n{sub}")),
        ("prefix-off", format!("{issuer}  claimMappings:\n    username: {{claim: sub, prefix: off}}\n")),
        ("claim-on", format!("{issuer}  claimMappings:\n    username: {{claim: on, prefix: \"\"}}\n")),
        ("required-value-number", format!("{issuer}  claimValidationRules:\n  - {{claim: level, requiredValue: 1}}\n{sub}")),
        ("plain-url", "- issuer:\n    url: https://issuer.example/x\n    audiences:\n    - k8s\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n".to_string()),
        ("tilde-prefix", format!("{issuer}  claimMappings:\n    username: {{claim: sub, prefix: ~}}\n")),
        ("duplicate-key", format!("{issuer}  claimMappings:\n    username: {{claim: sub, claim: email, prefix: \"\"}}\n")),
        ("tab-indent", format!("{issuer}  claimMappings:\n\tusername: {{claim: sub, prefix: \"\"}}\n")),
    ];
    for (n, body) in cases {
        out.push(Case {
            name: format!("yaml-{n}"),
            source: "generated: YAML 1.1 scalars".into(),
            kind: CaseKind::Yaml(format!("{head}{body}")),
        });
    }
}
