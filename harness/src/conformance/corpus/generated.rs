//! The generated CEL families: every literal type in every slot, every macro over every kind
//! of range, operators over mixed types, the libraries, optional syntax, literal validators,
//! constant folding, syntax errors, and size and nesting around cel-go's limits.

use super::*;

pub(super) fn cel(out: &mut Vec<Case>, family: &str, slot: Slot, expression: impl Into<String>) {
    let expression = expression.into();
    out.push(Case {
        name: format!("{family}-{}-{}", slot.name(), out.len() + 1),
        source: format!("generated: {family}"),
        kind: CaseKind::Cel { slot, expression },
    });
}

/// The generated CEL families.
pub(super) fn generated_cel(out: &mut Vec<Case>) {
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
