//! The inputs of the conformance run (pure): AuthenticationConfigurations that the real
//! kube-apiserver and explain's validator both judge. Three sources, so the test is wider
//! than what we would think of ourselves:
//! - expressions from Kubernetes' documentation, tests and users' reports
//!   (`expressions.txt`, each line with where it came from);
//! - generated CEL: every literal type in every slot (result types), every macro over every
//!   kind of range (comprehension ranges), operators over mixed types, the API server's own
//!   libraries per minor, optional syntax, literal validators, syntax errors, and size and
//!   nesting extremes;
//! - every field of the configuration with its bad values (URLs, audiences, CA, prefixes,
//!   claim rules, extra keys, versions, unknown fields).
//!
//! CEL cases are batched: one configuration holds up to [`BATCH`] JWT authenticators, each
//! with one case, and each error the API server reports names its authenticator
//! (`jwt[3].claimMappings.groups.expression`), so one start judges many cases. Cases about
//! the configuration as a whole run alone.

use serde_json::{Value, json};

/// Authenticators per configuration (the API server allows 64).
pub const BATCH: usize = 32;

/// Where an expression goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    ClaimRule,
    Username,
    Groups,
    Uid,
    Extra,
    UserRule,
}

impl Slot {
    pub const ALL: [Slot; 6] = [
        Slot::ClaimRule,
        Slot::Username,
        Slot::Groups,
        Slot::Uid,
        Slot::Extra,
        Slot::UserRule,
    ];

    fn parse(s: &str) -> Option<Slot> {
        Some(match s {
            "claimValidationRule" => Slot::ClaimRule,
            "username" => Slot::Username,
            "groups" => Slot::Groups,
            "uid" => Slot::Uid,
            "extra" => Slot::Extra,
            "userValidationRule" => Slot::UserRule,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Slot::ClaimRule => "claimValidationRule",
            Slot::Username => "username",
            Slot::Groups => "groups",
            Slot::Uid => "uid",
            Slot::Extra => "extra",
            Slot::UserRule => "userValidationRule",
        }
    }
}

/// One input: a CEL expression in a slot, or a whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    /// Where it came from: an upstream file or page, or the generator family.
    pub source: String,
    pub kind: CaseKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaseKind {
    Cel {
        slot: Slot,
        expression: String,
    },
    Config(Value),
    /// A configuration as YAML text, for what only YAML can say (`message: no` is a
    /// boolean to the API server's YAML 1.1 reader).
    Yaml(String),
}

/// A configuration to start the API server with, and the cases it judges: for a batch,
/// case `i` is `jwt[i]`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub doc: Value,
    /// The file as written, when it is not `doc` serialized.
    pub text: Option<String>,
    pub cases: Vec<Case>,
    pub batched: bool,
}

pub const ISSUER: &str = "https://issuer.example/oauth2/openid/k8s";
/// The lab's `--service-account-issuer`: a JWT issuer may not reuse it.
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn api_version(minor: u32) -> &'static str {
    if minor >= 34 {
        "apiserver.config.k8s.io/v1"
    } else {
        "apiserver.config.k8s.io/v1beta1"
    }
}

fn base_jwt(url: &str) -> Value {
    json!({
        "issuer": {"url": url, "audiences": ["k8s"]},
        "claimMappings": {"username": {"claim": "preferred_username", "prefix": ""}},
    })
}

/// The authenticator of one CEL case.
fn cel_jwt(slot: Slot, expression: &str, url: &str) -> Value {
    let mut j = base_jwt(url);
    let m = &mut j["claimMappings"];
    match slot {
        Slot::ClaimRule => {
            j["claimValidationRules"] = json!([{"expression": expression, "message": "rule"}]);
        }
        Slot::Username => m["username"] = json!({"expression": expression}),
        Slot::Groups => m["groups"] = json!({"expression": expression}),
        Slot::Uid => m["uid"] = json!({"expression": expression}),
        Slot::Extra => {
            m["extra"] = json!([{"key": "example.com/x", "valueExpression": expression}])
        }
        Slot::UserRule => {
            j["userValidationRules"] = json!([{"expression": expression, "message": "rule"}]);
        }
    }
    j
}

fn document(minor: u32, jwt: Vec<Value>) -> Value {
    json!({"apiVersion": api_version(minor), "kind": "AuthenticationConfiguration", "jwt": jwt})
}

/// Every case for kube-apiserver `1.<minor>`, batched.
pub fn batches(minor: u32) -> Vec<Batch> {
    batches_of(&cases(minor), minor)
}

/// `cases` as configurations: CEL cases [`BATCH`] to a file, the others one each.
pub fn batches_of(cases: &[Case], minor: u32) -> Vec<Batch> {
    let (cel, whole): (Vec<&Case>, Vec<&Case>) = cases
        .iter()
        .partition(|c| matches!(c.kind, CaseKind::Cel { .. }));
    let mut out: Vec<Batch> = cel
        .chunks(BATCH)
        .map(|chunk| {
            let jwt = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, c)| match &c.kind {
                    CaseKind::Cel { slot, expression } => {
                        Some(cel_jwt(*slot, expression, &format!("{ISSUER}{i}")))
                    }
                    CaseKind::Config(_) | CaseKind::Yaml(_) => None,
                })
                .collect();
            Batch {
                doc: document(minor, jwt),
                text: None,
                cases: chunk.iter().map(|c| (*c).clone()).collect(),
                batched: true,
            }
        })
        .collect();
    out.extend(whole.into_iter().filter_map(|c| match &c.kind {
        CaseKind::Config(v) => Some(Batch {
            doc: v.clone(),
            text: None,
            cases: vec![c.clone()],
            batched: false,
        }),
        CaseKind::Yaml(t) => Some(Batch {
            doc: Value::Null,
            text: Some(t.clone()),
            cases: vec![c.clone()],
            batched: false,
        }),
        CaseKind::Cel { .. } => None,
    }));
    out
}

/// Every case, unbatched.
pub fn cases(minor: u32) -> Vec<Case> {
    let mut out = Vec::new();
    upstream(&mut out);
    generated_cel(&mut out);
    fields(minor, &mut out);
    yaml(minor, &mut out);
    // The same expression in the same slot once, whatever its source.
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| match &c.kind {
        CaseKind::Cel { slot, expression } => seen.insert((slot.name(), expression.clone())),
        CaseKind::Config(_) | CaseKind::Yaml(_) => true,
    });
    out
}

/// `expressions.txt`: `slot<TAB>expression<TAB>source`, `#` comments.
fn upstream(out: &mut Vec<Case>) {
    for (n, line) in include_str!("expressions.txt").lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        let (Some(slot), Some(expr), source) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some(slot) = Slot::parse(slot) else {
            continue;
        };
        out.push(Case {
            name: format!("upstream-{}", n + 1),
            source: source.unwrap_or("expressions.txt").to_string(),
            kind: CaseKind::Cel {
                slot,
                expression: unescape(expr),
            },
        });
    }
}

/// `\t`, `\n` and `\\` in `expressions.txt`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn cel(out: &mut Vec<Case>, family: &str, slot: Slot, expression: impl Into<String>) {
    let expression = expression.into();
    out.push(Case {
        name: format!("{family}-{}-{}", slot.name(), out.len() + 1),
        source: format!("generated: {family}"),
        kind: CaseKind::Cel { slot, expression },
    });
}

/// The generated CEL families.
fn generated_cel(out: &mut Vec<Case>) {
    use Slot::*;
    // Result types: every literal type in every slot.
    let literals = [
        "true",
        "1",
        "1u",
        "1.5",
        "'s'",
        "b'x'",
        "null",
        "['a']",
        "[1]",
        "{'a': 'b'}",
        "duration('1s')",
        "timestamp('2024-01-01T00:00:00Z')",
        "claims",
        "claims.sub",
        "dyn(claims.sub)",
        "type(claims.sub)",
        "claims.?sub",
    ];
    for slot in Slot::ALL {
        for l in literals {
            let l = if slot == UserRule {
                l.replace("claims", "user")
            } else {
                l.to_string()
            };
            cel(out, "result-type", slot, l);
        }
    }
    for e in [
        "claims.email_verified",
        "claims.email_verified == true",
        "claims.?email_verified.orValue(false)",
        "claims.?email_verified.orValue(false) == true",
        "has(claims.hd)",
        "!has(claims.hd)",
        "claims.hd == 'example.com' ? true : false",
        "dyn(claims.email_verified)",
        "bool(claims.email_verified)",
        "claims.exp > 0",
        "claims.exp - claims.iat <= 900",
        "size(claims.groups) > 0",
        "'k8s_users' in claims.groups",
        "claims.groups.exists(g, g == 'k8s_users')",
        "dyn(claims.groups).exists(g, g == 'k8s_users')",
    ] {
        cel(out, "claim-rule-bool", ClaimRule, e);
    }
    for e in [
        "user.username",
        "user.groups",
        "!user.username.startsWith('system:')",
        "user.groups.all(g, !g.startsWith('system:'))",
        "'system:masters' in user.groups",
        "user.uid != ''",
        "size(user.extra) >= 0",
        "user.extra.all(k, k != '')",
        "user.extra['example.com/x'].all(v, v != '')",
        "user.username == user.uid",
        "user.groups.exists_one(g, g == 'x')",
        "user.groups.map(g, g.size()).all(n, n > 0)",
        "user.groups.filter(g, g.startsWith('k8s')).size() >= 0",
        "has(user.username)",
        "has(user.foo)",
        "user.foo == ''",
        "claims.sub == ''",
        "user.username.matches('^[a-z]+@')",
        "user.extra.exists(k, user.extra[k].exists(v, v == 'x'))",
    ] {
        cel(out, "user-rule", UserRule, e);
    }
    // Comprehension ranges: each macro over each kind of range.
    let ranges = [
        "claims.groups",
        "dyn(claims.groups)",
        "claims['groups']",
        "claims.?groups.orValue([])",
        "claims.realm_access.roles",
        "claims",
        "[1, 2]",
        "['a', 'b']",
        "{'a': 1}",
        "'abc'",
        "1",
        "claims.roles.split(',')",
        "(claims.groups)",
        "dyn(claims).groups",
        "[]",
    ];
    let macros = [
        ("all", "true"),
        ("exists", "true"),
        ("exists_one", "true"),
        ("map", "x"),
        ("filter", "true"),
    ];
    for r in ranges {
        for (m, body) in macros {
            let slot = if matches!(m, "map" | "filter") {
                Groups
            } else {
                ClaimRule
            };
            cel(
                out,
                "comprehension-range",
                slot,
                format!("{r}.{m}(x, {body})"),
            );
        }
        cel(
            out,
            "comprehension-range",
            Groups,
            format!("{r}.map(x, true, x)"),
        );
    }
    for e in [
        "claims.all(k, k != '')",
        "claims.all(k, v, k != '')",
        "dyn(claims.groups).all(i, v, i >= 0)",
        "dyn(claims.groups).transformList(i, v, v)",
        "dyn(claims.groups).transformList(i, v, i > 0, v)",
        "claims.transformMap(k, v, v)",
        "dyn(claims.groups).existsOne(g, g == 'a')",
        "[1].all(x, [1].all(y, [1].all(z, x == y && y == z)))",
        "dyn(claims.groups).map(g, dyn(claims.groups).map(h, g + h))",
        "dyn(claims.groups).map(g, 'k8s:' + g)",
        "dyn(claims.groups).filter(g, g.startsWith('k8s_')).map(g, g.replace('k8s_', ''))",
        "dyn(claims.groups).map(g, g.split('@')[0])",
        "claims.groups.size() > 0 ? dyn(claims.groups) : []",
        "has(claims.groups) ? dyn(claims.groups).map(g, 'oidc:' + g) : []",
        "claims.?groups.orValue([])",
        "dyn(claims.?groups.orValue([])).map(g, g)",
    ] {
        cel(out, "comprehension", Groups, e);
    }
    // Operators over mixed types.
    for e in [
        "'a' + 1",
        "1 + 1u",
        "1 + 1.0",
        "1 == 1u",
        "1 == 1.0",
        "1 < 1.5",
        "1u < 2",
        "'a' < 1",
        "'a' < 'b'",
        "true ? 1 : 'a'",
        "true ? claims.sub : 'a'",
        "claims.sub ? 'a' : 'b'",
        "claims.sub + 1",
        "claims.sub + claims.iss",
        "claims.sub + ['x']",
        "[claims.sub, 'x']",
        "[1, 'a']",
        "{'a': 1, 'b': 'c'}",
        "{1: 'a', 'b': 'c'}",
        "{claims.sub: 'x'}",
        "[1, 2] + ['a']",
        "!claims.sub",
        "-claims.exp",
        "-'a'",
        "claims.sub in ['a']",
        "1 in ['a']",
        "claims.exp / 0",
        "9223372036854775807 + 1",
        "claims.sub[0]",
        "claims.groups[0]",
        "'abc'[0]",
        "{'a': 1}['a']",
        "[1][0]",
        "[1]['a']",
        "claims == claims",
        "claims.sub == null",
        "null == null",
        "size(claims)",
        "size(claims.sub)",
        "size(1)",
        "int(claims.exp)",
        "string(claims.exp)",
        "string(claims)",
        "double('1.5')",
        "uint(-1)",
        "bytes('a')",
        "timestamp(claims.iat)",
        "duration('1h') + timestamp('2024-01-01T00:00:00Z')",
        "timestamp('2024-01-01T00:00:00Z') - timestamp('2024-01-01T00:00:00Z')",
    ] {
        cel(out, "operators", Username, e);
    }
    // Strings, lists and Kubernetes' libraries (some only in newer minors).
    for e in [
        "claims.sub.lowerAscii()",
        "claims.sub.upperAscii()",
        "claims.sub.trim()",
        "claims.sub.replace('a', 'b')",
        "claims.sub.replace('a', 'b', 1)",
        "claims.sub.split('@')[0]",
        "claims.sub.substring(0, 3)",
        "claims.sub.charAt(0)",
        "claims.sub.indexOf('@')",
        "claims.sub.lastIndexOf('@')",
        "claims.sub.reverse()",
        "['a', 'b'].join(',')",
        "dyn(claims.groups).join(',')",
        "strings.quote(claims.sub)",
        "'%s'.format([claims.sub])",
        "claims.sub.matches('^[a-z]+$') ? claims.sub : ''",
        "claims.sub.find('[a-z]+')",
        "claims.sub.findAll('[a-z]')",
        "url(claims.iss).getHost()",
        "url(claims.iss).getScheme()",
        "url(claims.iss).getQuery()",
        "isURL(claims.iss) ? 'u' : 'n'",
        "ip('10.0.0.1').family() == 4 ? 'v4' : 'v6'",
        "cidr('10.0.0.0/8').containsIP('10.1.1.1') ? 'in' : 'out'",
        "quantity('1Gi').isInteger() ? 'q' : 'n'",
        "semver('1.2.3').major() == 1 ? 's' : 'n'",
        "isSemver('1.2.3') ? 's' : 'n'",
        "[3, 1].isSorted() ? 's' : 'n'",
        "string([1, 2].sum())",
        "string([1, 2].max())",
        "['a'].indexOf('a') == 0 ? 'i' : 'n'",
        "sets.contains(['a', 'b'], ['a']) ? 's' : 'n'",
        "sets.intersects(dyn(claims.groups), ['k8s_admins']) ? 'admin' : 'user'",
        "string(lists.range(3))",
        "string([1, 2, 3].slice(0, 2))",
        "string([[1], [2]].flatten())",
        "string([1, 1].distinct())",
        "string([2, 1].sort())",
        "[1, 2].first().orValue(0) == 1 ? 'f' : 'n'",
        "string([1, 2].reverse())",
        "math.greatest(1, 2) == 2 ? 'm' : 'n'",
        "base64.encode(b'a')",
        "cel.bind(x, claims.sub, x + x)",
        "authorizer.group('').resource('pods').check('get').allowed() ? 'a' : 'n'",
        "optional.of(claims.sub).orValue('')",
        "optional.none().orValue('x')",
        "claims.?sub.hasValue() ? 'h' : 'n'",
        "claims.?sub.value()",
        "claims[?'sub'].orValue('')",
        "claims.?a.?b.orValue('')",
        "[?claims.?sub]",
        "{?'a': claims.?sub}",
        "duration('1x')",
        "timestamp('not a time')",
        "claims.sub.matches('[')",
        "'a'.matches('(')",
        "claims.sub.foo()",
        "foo(claims.sub)",
        "request.auth.claims.sub",
        "user.username",
        "self.sub",
        "Foo{a: 1}",
    ] {
        cel(out, "library", Username, e);
    }
    // Syntax errors and the empty expression.
    for e in [
        "",
        " ",
        "claims.",
        "(",
        "1 +",
        "'unterminated",
        "claims..sub",
        "]",
        "claims.sub )",
        "claims.groups.all(1, true)",
        "has(claims)",
        "has(claims.a.b)",
        "claims.groups.map(g)",
        "claims.sub.@x",
        "1 ++ 2",
        "claims.sub // c",
        "claims.sub\n+ 'x'",
        "`x`",
        "claims.`sub`",
        "\u{0}",
    ] {
        cel(out, "syntax", Username, e);
    }
    // The email rule: `claims.email` in a username expression needs `email_verified`.
    for e in [
        "claims.email",
        "claims.email_verified ? claims.email : claims.sub",
        "claims.?email.orValue(claims.sub)",
        "claims['email']",
        "claims.emailaddress",
        "claims.email.split('@')[0]",
    ] {
        cel(out, "email-rule", Username, e);
    }
    // Size and nesting extremes.
    for depth in [10, 100, 200, 240, 249, 250, 251, 300] {
        let e = format!("{}claims.sub{}", "(".repeat(depth), ")".repeat(depth));
        cel(out, &format!("nesting-parens-{depth}"), Username, e);
    }
    for depth in [10, 100, 249, 250, 251] {
        let e = format!("{}'a'{}", "[".repeat(depth), "]".repeat(depth));
        cel(out, &format!("nesting-lists-{depth}"), Groups, e);
    }
    for n in [249, 250, 251] {
        cel(
            out,
            &format!("selects-{n}"),
            Username,
            format!("dyn(claims){}", ".a".repeat(n)),
        );
        cel(
            out,
            &format!("selects-bare-{n}"),
            Username,
            format!("claims{}", ".a".repeat(n)),
        );
    }
    for n in [124, 125, 126] {
        cel(
            out,
            &format!("index-select-{n}"),
            Username,
            format!("claims{}", ".a['b']".repeat(n)),
        );
        cel(
            out,
            &format!("and-chain-{n}"),
            ClaimRule,
            vec!["claims.a == 1"; n * 2].join(" && "),
        );
    }
    // Conversions of literals that fail when cel-go folds constants: an internal error.
    for e in [
        "int('abc')",
        "uint(-1.5)",
        "int(18446744073709551615u)",
        "double('x')",
        "timestamp(253402300800)",
        "uint('-1')",
        "bool('maybe')",
        "int(-9.3e18)",
        "string(b'\\xff')",
        "bytes('a')",
        "[1, 2][5]",
        "{'a': 1}['b']",
        "dyn(uint(-1))",
        "int(9223372036854775807.0)",
        "uint(-1)",
        "bool('True')",
        "int('12')",
    ] {
        cel(out, "constant-folding", Username, e);
    }
    for terms in [100, 200, 240, 249, 250, 251, 252, 1000, 5000] {
        let e = vec!["claims.sub"; terms].join(" + ");
        cel(out, &format!("chain-{terms}"), Username, e);
    }
    for depth in [5, 20, 50] {
        let mut e = "true".to_string();
        for i in 0..depth {
            e = format!("[1].all(x{i}, {e})");
        }
        cel(out, &format!("nested-comprehensions-{depth}"), ClaimRule, e);
    }
    for size in [99_990, 100_001] {
        let e = format!("'{}'", "a".repeat(size - 2));
        cel(out, &format!("size-{size}"), Username, e);
    }
    cel(
        out,
        "size-unicode",
        Username,
        format!("'{}'", "é".repeat(50_000)),
    );
}

/// Whole-configuration cases: each field with its bad values.
fn fields(minor: u32, out: &mut Vec<Case>) {
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
fn yaml(minor: u32, out: &mut Vec<Case>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_as_wide_as_promised() {
        for minor in [33, 36] {
            let all = cases(minor);
            let cel = all
                .iter()
                .filter(|c| matches!(c.kind, CaseKind::Cel { .. }))
                .count();
            let whole = all.len() - cel;
            assert!(all.len() >= 300, "{} cases", all.len());
            assert!(cel >= 250 && whole >= 80, "{cel} CEL, {whole} whole");
            let b = batches(minor);
            assert_eq!(b.iter().map(|b| b.cases.len()).sum::<usize>(), all.len());
            assert!(b.iter().all(|b| b.doc.is_object() || b.text.is_some()));
            assert!(
                b.iter()
                    .filter(|b| b.batched)
                    .all(|b| b.cases.len() <= BATCH)
            );
        }
    }
}
