//! `kubectl`-style actions in expectations: `list pods -A`, `delete namespace scratch`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Parsed when the scenario loads (a bad action is a located load error, never a run-time one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Action {
    pub verb: String,
    pub resource: String,
    pub name: Option<String>,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No namespace flag: the default namespace for namespaced resources, or cluster scope.
    Default,
    Namespace(String),
    AllNamespaces,
}

pub const VERBS: [&str; 9] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "impersonate",
];

impl Action {
    pub fn parse(text: &str) -> Result<Action, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut positional = Vec::new();
        let mut scope = Scope::Default;
        let mut i = 0;
        while i < words.len() {
            match words[i] {
                "-A" | "--all-namespaces" => scope = Scope::AllNamespaces,
                "-n" | "--namespace" => {
                    let ns = words.get(i + 1).ok_or("`-n` needs a namespace")?;
                    if !is_dns_label(ns) {
                        return Err(format!(
                            "`-n {ns}`: a namespace is a DNS label (lowercase letters, digits and `-`, at most 63, starting and ending with a letter or digit), e.g. `-n kube-system`"
                        ));
                    }
                    scope = Scope::Namespace((*ns).to_string());
                    i += 1;
                }
                w if w.starts_with('-') => {
                    return Err(format!(
                        "unknown flag `{w}`; only `-n <namespace>` and `-A` are supported"
                    ));
                }
                w => positional.push(w),
            }
            i += 1;
        }
        let (verb, resource, name) = match positional.as_slice() {
            [verb, resource] => (*verb, *resource, None),
            [verb, resource, name] => (*verb, *resource, Some((*name).to_string())),
            _ => {
                return Err("expected `<verb> <resource> [name] [-n <namespace> | -A]`, e.g. `list pods -A`".to_string());
            }
        };
        if !VERBS.contains(&verb) {
            return Err(format!(
                "unknown verb `{verb}`; expected one of {}",
                VERBS.join(", ")
            ));
        }
        Ok(Action {
            verb: verb.to_string(),
            resource: resource.to_string(),
            name,
            scope,
        })
    }

    /// Does this action change state (and so runs with `--dry-run=server`)?
    pub fn is_mutating(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// Is the resource a namespace (which must exist before a delete is meaningful)?
    pub fn namespace_target(&self) -> Option<&str> {
        if matches!(self.resource.as_str(), "namespace" | "namespaces" | "ns") {
            self.name.as_deref()
        } else {
            None
        }
    }
}

/// A Kubernetes namespace name (RFC 1123 label).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl TryFrom<String> for Action {
    type Error = String;
    fn try_from(text: String) -> Result<Action, String> {
        Action::parse(&text)
    }
}

impl From<Action> for String {
    fn from(a: Action) -> String {
        a.to_string()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(n) = &self.name {
            write!(f, " {n}")?;
        }
        match &self.scope {
            Scope::Default => Ok(()),
            Scope::Namespace(ns) => write!(f, " -n {ns}"),
            Scope::AllNamespaces => write!(f, " -A"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let a = Action::parse("list pods -A").unwrap();
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.scope),
            ("list", "pods", Scope::AllNamespaces)
        );
        let d = Action::parse("delete namespace scratch").unwrap();
        assert_eq!(d.namespace_target(), Some("scratch"));
        assert!(d.is_mutating());
        let g = Action::parse("get pods -n kube-system").unwrap();
        assert_eq!(g.scope, Scope::Namespace("kube-system".into()));
        assert_eq!(g.to_string(), "get pods -n kube-system");
    }

    #[test]
    fn rejects_bad_forms() {
        assert!(
            Action::parse("fly pods")
                .unwrap_err()
                .contains("unknown verb")
        );
        assert!(Action::parse("list").unwrap_err().contains("expected"));
        assert!(
            Action::parse("get pods -n -A")
                .unwrap_err()
                .contains("namespace is a DNS label")
        );
        assert!(
            Action::parse("list pods --watch")
                .unwrap_err()
                .contains("unknown flag")
        );
    }
}
