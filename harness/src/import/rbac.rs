//! RBAC objects a user applied (multi-document YAML files, or `kubectl create
//! clusterrolebinding|rolebinding` lines) read into the scenario's `rbac:` section. Kinds the
//! lab does not model are listed as not imported, never dropped quietly. Pure.

use super::rewrite::{Log, Origin};
use serde_json::{Value, json};

/// Bindings and ClusterRoles so far (as the scenario writes them), and what was left out.
#[derive(Debug, Default)]
pub struct RbacImport {
    pub cluster_roles: Vec<Value>,
    pub bindings: Vec<Value>,
    pub not_imported: Vec<String>,
}

/// Where a document came from, for messages.
pub struct At<'a> {
    pub file: &'a str,
    pub line: usize,
}

const BUILTIN: [&str; 4] = ["view", "edit", "admin", "cluster-admin"];

impl RbacImport {
    /// One YAML document. Err: a located message (the document cannot be read as the kind it
    /// says it is).
    pub fn document(
        &mut self,
        doc: &Value,
        at: &At<'_>,
        origin: &Origin,
        log: &mut Log,
    ) -> Result<(), String> {
        if doc.is_null() {
            return Ok(());
        }
        let kind = doc["kind"].as_str().unwrap_or("");
        let name = doc["metadata"]["name"].as_str().unwrap_or("");
        let here = format!("{}:{}", at.file, at.line);
        match kind {
            "List" => {
                for item in doc["items"].as_array().into_iter().flatten() {
                    self.document(item, at, origin, log)?;
                }
                Ok(())
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                if name.is_empty() {
                    return Err(format!("{here}: a {kind} without metadata.name"));
                }
                let role = &doc["roleRef"];
                let role_kind = role["kind"].as_str().unwrap_or("");
                let role_name = role["name"].as_str().unwrap_or("");
                if role_kind != "ClusterRole" {
                    self.not_imported.push(format!(
                        "{kind} `{name}` ({here}): its roleRef is a {role_kind}; the lab binds ClusterRoles only"
                    ));
                    return Ok(());
                }
                let mut groups = Vec::new();
                let mut users = Vec::new();
                for s in doc["subjects"].as_array().into_iter().flatten() {
                    let sname = s["name"].as_str().unwrap_or("");
                    match s["kind"].as_str().unwrap_or("") {
                        "Group" => groups.push(origin.subject(sname, log)),
                        "User" => users.push(origin.subject(sname, log)),
                        other => self.not_imported.push(format!(
                            "subject {other} `{sname}` of {kind} `{name}` ({here}): only users and groups come from Kanidm"
                        )),
                    }
                }
                if groups.is_empty() && users.is_empty() {
                    self.not_imported.push(format!(
                        "{kind} `{name}` ({here}): no user or group subjects"
                    ));
                    return Ok(());
                }
                let mut b = json!({"name": name, "clusterRole": role_name});
                if kind == "RoleBinding" {
                    b["namespace"] =
                        json!(doc["metadata"]["namespace"].as_str().unwrap_or("default"));
                }
                if !groups.is_empty() {
                    b["groups"] = json!(groups);
                }
                if !users.is_empty() {
                    b["users"] = json!(users);
                }
                self.bindings.push(b);
                Ok(())
            }
            "ClusterRole" => {
                if BUILTIN.contains(&name) {
                    return Ok(());
                }
                let mut rules = Vec::new();
                for r in doc["rules"].as_array().into_iter().flatten() {
                    if r.get("nonResourceURLs").is_some() || r.get("resourceNames").is_some() {
                        self.not_imported.push(format!(
                            "a rule of ClusterRole `{name}` ({here}) with nonResourceURLs or resourceNames"
                        ));
                        continue;
                    }
                    rules.push(json!({
                        "apiGroups": r["apiGroups"].clone(),
                        "resources": r["resources"].clone(),
                        "verbs": r["verbs"].clone(),
                    }));
                }
                if doc.get("aggregationRule").is_some() {
                    self.not_imported.push(format!(
                        "the aggregationRule of ClusterRole `{name}` ({here})"
                    ));
                }
                self.cluster_roles
                    .push(json!({"name": name, "rules": rules}));
                Ok(())
            }
            "" => Err(format!("{here}: a document without `kind`")),
            other => {
                self.not_imported.push(format!(
                    "{other} `{name}` ({here}): not RBAC the lab models (ClusterRoleBinding, RoleBinding, ClusterRole)"
                ));
                Ok(())
            }
        }
    }

    /// `kubectl create clusterrolebinding|rolebinding <name> --clusterrole=<r> [--user=…]…
    /// [--group=…]… [-n <ns>]` (words after `kubectl`). Err: what is wrong.
    pub fn kubectl_create(
        &mut self,
        words: &[String],
        origin: &Origin,
        log: &mut Log,
    ) -> Result<(), String> {
        let (kind, name) = match words {
            [c, k, n, ..] if c == "create" && (k == "clusterrolebinding" || k == "rolebinding") => {
                (k.as_str(), n.as_str())
            }
            _ => return Err("not a `kubectl create clusterrolebinding|rolebinding` line".into()),
        };
        let mut role = None;
        let mut ns = None;
        let (mut users, mut groups) = (Vec::new(), Vec::new());
        let mut i = 3;
        while i < words.len() {
            let w = &words[i];
            let (flag, inline) = match w.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (w.as_str(), None),
            };
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    words
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("{flag} needs a value"))?
                }
            };
            match flag {
                "--clusterrole" => role = Some(value),
                "--role" => {
                    return Err(format!(
                        "`--role={value}`: the lab binds ClusterRoles only (`--clusterrole`)"
                    ));
                }
                "--user" => users.push(origin.subject(&value, log)),
                "--group" => groups.push(origin.subject(&value, log)),
                "-n" | "--namespace" => ns = Some(value),
                "--serviceaccount" => self.not_imported.push(format!(
                    "service account `{value}` of binding `{name}`: only users and groups come from Kanidm"
                )),
                other => return Err(format!("`kubectl create {kind}` flag `{other}` is not one the lab reads")),
            }
            i += 1;
        }
        let role = role.ok_or("`--clusterrole=<role>` is missing")?;
        let mut b = json!({"name": name, "clusterRole": role});
        if kind == "rolebinding" {
            b["namespace"] = json!(ns.unwrap_or_else(|| "default".into()));
        }
        if !groups.is_empty() {
            b["groups"] = json!(groups);
        }
        if !users.is_empty() {
            b["users"] = json!(users);
        }
        self.bindings.push(b);
        Ok(())
    }

    /// Roles a binding names that are neither built in nor imported.
    pub fn unknown_roles(&self) -> Vec<String> {
        let defined: Vec<&str> = self
            .cluster_roles
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        self.bindings
            .iter()
            .filter_map(|b| b["clusterRole"].as_str())
            .filter(|r| !BUILTIN.contains(r) && !defined.contains(r))
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_2s_kubectl_line_binds_the_person_by_uuid() {
        let mut o = Origin {
            issuer: Some("https://sso.kammel.dev/oauth2/openid/k8s".into()),
            client: Some("k8s".into()),
            domain: Some("sso.kammel.dev".into()),
            ..Default::default()
        };
        o.uuids.insert("7b89".into(), "datosh".into());
        let mut r = RbacImport::default();
        let mut log = Log::default();
        let words: Vec<String> = "create clusterrolebinding oidc-cluster-admin --clusterrole=cluster-admin --user=https://sso.kammel.dev/oauth2/openid/k8s#7b89"
            .split(' ')
            .map(str::to_string)
            .collect();
        r.kubectl_create(&words, &o, &mut log).unwrap();
        assert_eq!(r.bindings[0]["users"][0], "${issuer:k8s}#${uuid:datosh}");
        assert_eq!(r.bindings[0]["clusterRole"], "cluster-admin");
        let bad: Vec<String> = ["create", "rolebinding", "x", "--role=r"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(r.kubectl_create(&bad, &o, &mut log).is_err());
    }

    #[test]
    fn unknown_kinds_are_listed_not_dropped() {
        let mut r = RbacImport::default();
        let mut log = Log::default();
        let at = At {
            file: "rbac.yaml",
            line: 3,
        };
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "x"}});
        r.document(&cm, &at, &Origin::default(), &mut log).unwrap();
        assert!(r.not_imported[0].contains("ConfigMap `x` (rbac.yaml:3)"));
        assert!(
            r.document(&json!({"metadata": {}}), &at, &Origin::default(), &mut log)
                .is_err()
        );
    }
}
