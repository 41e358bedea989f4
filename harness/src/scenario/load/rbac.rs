//! The `rbac:` section: role references, Kubernetes names, and nothing that touches the
//! cluster's own objects.

use super::*;

pub(super) fn check_rbac(c: &mut Checker<'_>, rbac: &Rbac, known: &Known<'_>) {
    let (clients, persons) = (&known.clients, &known.persons);
    let mut roles: BTreeSet<&str> = BUILTIN_CLUSTER_ROLES.into_iter().collect();
    for r in &rbac.cluster_roles {
        roles.insert(r.name.value.as_str());
    }
    duplicates(
        c,
        rbac.bindings
            .iter()
            .enumerate()
            .map(|(i, b)| (&b.name, format!("rbac.bindings[{i}].name"))),
        "binding",
    );
    for (i, b) in rbac.bindings.iter().enumerate() {
        let f = format!("rbac.bindings[{i}]");
        c.reference(
            &b.cluster_role,
            &format!("{f}.clusterRole"),
            "role",
            &roles,
            "rbac.clusterRoles (or use view, edit, admin, cluster-admin)",
        );
        if b.groups.is_empty() && b.users.is_empty() {
            c.err(
                b.name.referenced,
                f.clone(),
                "a binding needs at least one of `groups` or `users`",
            );
        }
        for subject in b.groups.iter().chain(&b.users) {
            c.placeholders(
                subject,
                b.name.referenced,
                &format!("{f}.subjects"),
                clients,
                persons,
            );
        }
    }
}

/// RBAC objects the harness creates: Kubernetes names, namespaces, at least one verb.
pub(super) fn check_rbac_values(c: &mut Checker<'_>, rbac: &Rbac) {
    for (i, r) in rbac.cluster_roles.iter().enumerate() {
        c.k8s_object_name(&r.name, format!("rbac.clusterRoles[{i}].name"));
        if BUILTIN_CLUSTER_ROLES.contains(&r.name.value.as_str())
            || r.name.value.starts_with("system:")
        {
            c.err(
                r.name.referenced,
                format!("rbac.clusterRoles[{i}].name"),
                format!(
                    "`{}` is a ClusterRole every cluster has; the lab would overwrite it on a shared API server and delete it afterwards",
                    r.name.value.escape_debug()
                ),
            )
            .help = Some(format!(
                "bind the built-in role by name (`role: {}` in a binding) or give yours another name",
                r.name.value.escape_debug()
            ));
        }
        for (j, rule) in r.rules.iter().enumerate() {
            if rule.verbs.is_empty() || rule.verbs.iter().any(|v| v.is_empty()) {
                c.err(
                    r.name.referenced,
                    format!("rbac.clusterRoles[{i}].rules[{j}].verbs"),
                    "a rule needs at least one verb",
                )
                .help = Some("e.g. `verbs: [get, list, watch]`".into());
            }
        }
    }
    for (i, b) in rbac.bindings.iter().enumerate() {
        c.k8s_object_name(&b.name, format!("rbac.bindings[{i}].name"));
        if b.name.value.starts_with("system:") || b.name.value == "cluster-admin" {
            c.err(
                b.name.referenced,
                format!("rbac.bindings[{i}].name"),
                format!(
                    "`{}` is a binding the cluster itself has; the lab would replace it and delete it afterwards",
                    b.name.value.escape_debug()
                ),
            )
            .help = Some("give the binding a name of its own, e.g. `k8s-admins`".into());
        }
        if let Some(ns) = &b.namespace
            && !crate::scenario::action::is_dns_label(ns)
        {
            c.err(
                b.name.referenced,
                format!("rbac.bindings[{i}].namespace"),
                format!("`{}` is not a namespace name", ns.escape_debug()),
            )
            .help = Some(
                "a namespace is a DNS label: lowercase letters, digits and `-`, e.g. `team-a`"
                    .into(),
            );
        }
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): RBAC objects the harness creates.
pub(super) fn k8s_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(crate::scenario::action::is_dns_label)
}

pub(super) const K8S_NAME_HELP: &str =
    "Kubernetes names are lowercase letters, digits, `-` and `.` (at most 253), e.g. `lab-viewers`";
