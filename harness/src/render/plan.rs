//! What a scenario applies, for humans (`cargo xtask render`) and for the run: the API
//! server's authentication setup, and a readable plan of the Kanidm state.

use super::{K8sVersion, LabFacts};
use crate::cluster::AuthSetup;
use crate::scenario::LoadedScenario;
use anyhow::{Result, anyhow};
use std::path::Path;

/// The API server authentication for a scenario: a structured config file or `--oidc-*` flags.
pub fn auth_setup(s: &LoadedScenario, facts: &LabFacts, v: K8sVersion) -> Result<AuthSetup> {
    if let Some(yaml) = super::authn_config::render(s, facts, v)? {
        return Ok(AuthSetup::Structured { config_yaml: yaml });
    }
    let flags = super::oidc_flags::render(s, facts)?.ok_or_else(|| {
        anyhow!(
            "scenario {} configures no API server authentication",
            s.name
        )
    })?;
    Ok(AuthSetup::Flags(flags))
}

/// Everything `cargo xtask render` prints for a scenario.
pub fn render_all(
    s: &LoadedScenario,
    facts: &LabFacts,
    v: K8sVersion,
    kind_configs: &Path,
    images: &super::kind_config::ImageOverrides,
) -> Result<String> {
    let mut out = String::new();
    out.push_str(&format!("# scenario: {} (Kubernetes {v})\n", s.name));
    if !s.header.is_empty() {
        for l in s.header.lines() {
            out.push_str(&format!("# {l}\n"));
        }
    }
    out.push_str("\n## Kanidm (applied through kanidm_client as idm_admin)\n");
    out.push_str(&kanidm_plan(s));
    out.push_str("\n## API server authentication\n");
    let auth = auth_setup(s, facts, v)?;
    let kind_args: Vec<String> = match &auth {
        AuthSetup::Structured { config_yaml } => {
            out.push_str("# --authentication-config=<lab>/apiserver/authentication-config.yaml\n");
            out.push_str(config_yaml);
            vec![format!(
                "authentication-config={}/authentication-config.yaml",
                super::kind_config::NODE_AUTHN_DIR
            )]
        }
        AuthSetup::Flags(flags) => {
            for f in flags {
                out.push_str(&format!("{f}\n"));
            }
            flags
                .iter()
                .map(|f| {
                    f.trim_start_matches('-').replace(
                        &facts.ca_path_for_apiserver,
                        &format!("{}/ca.pem", super::kind_config::NODE_AUTHN_DIR),
                    )
                })
                .collect()
        }
    };
    out.push_str("\n## RBAC\n");
    out.push_str(&super::rbac::render(s, facts)?.to_yaml()?);
    let base_path = super::kind_config::base_config_path(kind_configs, v);
    let base_name = base_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.push_str(&format!(
        "\n## kind cluster config (kind-configs/{base_name} + this scenario's auth)\n"
    ));
    if let Some(image) = images.node.get(&v) {
        out.push_str(&format!("# node image overridden: {image}\n"));
    }
    if super::kind_config::needs_cgroup_v1_opt_in(v) {
        out.push_str(
            "# on a cgroup v1 host a run adds the patch `kind: KubeletConfiguration, failCgroupV1: false`\n",
        );
    }
    out.push_str(&format!(
        "# Kanidm runs as {} in the node's network namespace\n",
        images.kanidm_image()
    ));
    let node = super::kind_config::KindNodeOptions {
        node_image: images.node.get(&v).cloned(),
        allow_cgroup_v1: false,
    };
    match std::fs::read_to_string(&base_path) {
        Ok(base) => out.push_str(&super::kind_config::render(
            &base,
            Path::new("<lab>/apiserver"),
            &kind_args,
            &node,
        )?),
        Err(_) => out.push_str(&format!(
            "# no kind config for Kubernetes {v} (kind-configs/{base_name} is missing)\n"
        )),
    }
    Ok(out)
}

/// A readable plan of the Kanidm state (the `kanidm` CLI commands the posts ran).
pub fn kanidm_plan(s: &LoadedScenario) -> String {
    let k = &s.scenario.kanidm;
    let mut out = String::new();
    if let Some(m) = k.credential_type_minimum {
        out.push_str(&format!(
            "group account-policy credential-type-minimum idm_all_persons {}\n",
            m.as_kanidm()
        ));
    }
    for g in &k.groups {
        out.push_str(&format!("group create {}\n", g.name.value));
    }
    for p in &k.persons {
        out.push_str(&format!(
            "person create {} {:?}\n",
            p.name.value, p.display_name
        ));
        if !p.mail.is_empty() {
            out.push_str(&format!(
                "person update {} --mail {}\n",
                p.name.value,
                p.mail.join(" --mail ")
            ));
        }
        for g in &p.groups {
            out.push_str(&format!("group add-members {} {}\n", g.value, p.name.value));
        }
        out.push_str(&format!(
            "# credentials for {}: {:?} (generated, never printed)\n",
            p.name.value, p.credential
        ));
    }
    for c in &k.oauth2_clients {
        let n = &c.name.value;
        let kind = if c.public { "create-public" } else { "create" };
        out.push_str(&format!(
            "system oauth2 {kind} {n} {:?} {}\n",
            c.display_name, c.landing_url
        ));
        for u in &c.redirect_urls {
            out.push_str(&format!("system oauth2 add-redirect-url {n} {u}\n"));
        }
        if c.localhost_redirects {
            out.push_str(&format!("system oauth2 enable-localhost-redirects {n}\n"));
        }
        for m in &c.scope_maps {
            let sc: Vec<&str> = m.scopes.iter().map(|s| s.value.as_str()).collect();
            out.push_str(&format!(
                "system oauth2 update-scope-map {n} {} {}\n",
                m.group.value,
                sc.join(" ")
            ));
        }
        for m in &c.sup_scope_maps {
            let sc: Vec<&str> = m.scopes.iter().map(|s| s.value.as_str()).collect();
            out.push_str(&format!(
                "system oauth2 update-sup-scope-map {n} {} {}\n",
                m.group.value,
                sc.join(" ")
            ));
        }
        if c.legacy_crypto {
            out.push_str(&format!("system oauth2 warning-enable-legacy-crypto {n}\n"));
        }
        if c.prefer_short_username {
            out.push_str(&format!("system oauth2 prefer-short-username {n}\n"));
        }
        if let Some(img) = &c.image {
            let ext = img.rsplit('.').next().unwrap_or_default();
            out.push_str(&format!("system oauth2 set-image {n} {img} {ext}\n"));
        }
        for m in &c.claim_maps {
            out.push_str(&format!(
                "system oauth2 update-claim-map {n} {} {} {}\n",
                m.claim.value,
                m.group.value,
                m.values.join(" ")
            ));
        }
    }
    out
}
