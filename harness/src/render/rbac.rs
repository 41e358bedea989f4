//! RBAC objects for a scenario, as k8s-openapi types (applied with kube-rs as admin).

use super::{LabFacts, RenderError};
use crate::scenario::LoadedScenario;
use crate::scenario::placeholder;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "kanidm-k8s-lab";

#[derive(Debug, Clone, Default)]
pub struct RbacObjects {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub role_bindings: Vec<RoleBinding>,
}

impl RbacObjects {
    /// All objects as one multi-document YAML stream (what `render` prints).
    pub fn to_yaml(&self) -> Result<String, RenderError> {
        let mut docs = Vec::new();
        for v in self
            .cluster_roles
            .iter()
            .map(serde_json::to_value)
            .chain(self.cluster_role_bindings.iter().map(serde_json::to_value))
            .chain(self.role_bindings.iter().map(serde_json::to_value))
        {
            let v = v.map_err(|e| RenderError::Yaml(e.to_string()))?;
            docs.push(serde_saphyr::to_string(&v).map_err(|e| RenderError::Yaml(e.to_string()))?);
        }
        Ok(docs.join("---\n"))
    }

    /// Namespaces the bindings live in (created before applying).
    pub fn namespaces(&self) -> Vec<String> {
        let mut ns: Vec<String> = self
            .role_bindings
            .iter()
            .filter_map(|r| r.metadata.namespace.clone())
            .collect();
        ns.sort();
        ns.dedup();
        ns
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into()),
        ..Default::default()
    }
}

pub fn render(s: &LoadedScenario, facts: &LabFacts) -> Result<RbacObjects, RenderError> {
    let mut out = RbacObjects::default();
    for r in &s.scenario.rbac.cluster_roles {
        out.cluster_roles.push(ClusterRole {
            metadata: meta(&r.name.value, None),
            rules: Some(
                r.rules
                    .iter()
                    .map(|rule| PolicyRule {
                        api_groups: Some(rule.api_groups.clone()),
                        resources: Some(rule.resources.clone()),
                        verbs: rule.verbs.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
    }
    for b in &s.scenario.rbac.bindings {
        let mut subjects = Vec::new();
        for (kind, names) in [("Group", &b.groups), ("User", &b.users)] {
            for n in names {
                subjects.push(Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: kind.into(),
                    name: placeholder::resolve(n, &facts.values)
                        .map_err(RenderError::Placeholder)?,
                    namespace: None,
                });
            }
        }
        let role_ref = RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: b.cluster_role.value.clone(),
        };
        match &b.namespace {
            None => out.cluster_role_bindings.push(ClusterRoleBinding {
                metadata: meta(&b.name.value, None),
                role_ref,
                subjects: Some(subjects),
            }),
            Some(ns) => out.role_bindings.push(RoleBinding {
                metadata: meta(&b.name.value, Some(ns)),
                role_ref,
                subjects: Some(subjects),
            }),
        }
    }
    Ok(out)
}
