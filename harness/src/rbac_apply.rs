//! Apply a scenario's RBAC objects with kube-rs as the lab admin, replacing the previous
//! scenario's objects (found by label).

use crate::render::rbac::{MANAGED_BY, MANAGED_BY_LABEL, RbacObjects};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;

pub async fn admin_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("admin kubeconfig")?;
    kube::Client::try_from(cfg).context("building the admin Kubernetes client")
}

fn selector() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
}

/// Make sure these namespaces exist (idempotent).
pub async fn ensure_namespaces(client: &kube::Client, names: &[String]) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for n in names {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(n.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating namespace {n}")),
        }
    }
    Ok(())
}

pub async fn replace(client: &kube::Client, objects: &RbacObjects) -> Result<()> {
    let dp = DeleteParams::default();
    let crb: Api<ClusterRoleBinding> = Api::all(client.clone());
    let cr: Api<ClusterRole> = Api::all(client.clone());
    let rb: Api<RoleBinding> = Api::all(client.clone());
    crb.delete_collection(&dp, &selector())
        .await
        .context("removing the previous scenario's ClusterRoleBindings")?;
    cr.delete_collection(&dp, &selector())
        .await
        .context("removing the previous scenario's ClusterRoles")?;
    for old in rb.list(&selector()).await?.items {
        if let (Some(name), Some(ns)) = (old.metadata.name, old.metadata.namespace) {
            Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .delete(&name, &dp)
                .await?;
        }
    }
    ensure_namespaces(client, &objects.namespaces()).await?;
    let pp = PatchParams::apply("kanidm-k8s-lab").force();
    for o in &objects.cluster_roles {
        let name = o.metadata.name.clone().unwrap_or_default();
        cr.patch(&name, &pp, &Patch::Apply(o))
            .await
            .with_context(|| format!("applying ClusterRole {name}"))?;
    }
    for o in &objects.cluster_role_bindings {
        let name = o.metadata.name.clone().unwrap_or_default();
        crb.patch(&name, &pp, &Patch::Apply(o))
            .await
            .with_context(|| format!("applying ClusterRoleBinding {name}"))?;
    }
    for o in &objects.role_bindings {
        let name = o.metadata.name.clone().unwrap_or_default();
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(o))
            .await
            .with_context(|| format!("applying RoleBinding {ns}/{name}"))?;
    }
    Ok(())
}
