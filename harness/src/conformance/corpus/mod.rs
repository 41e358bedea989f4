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

mod fields;
mod generated;

use fields::{fields, yaml};
use generated::generated_cel;

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
    for (n, line) in include_str!("../expressions.txt").lines().enumerate() {
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
