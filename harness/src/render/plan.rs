//! What a scenario applies, for humans (`cargo xtask render`) and for the run: the API
//! server's authentication setup, and a readable plan of the Kanidm state.

use super::{K8sVersion, LabFacts};
use crate::scenario::LoadedScenario;
use anyhow::{Result, anyhow};
use std::path::Path;

/// How the API server should authenticate OIDC tokens for one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSetup {
    /// `--authentication-config=<file>` with this content.
    Structured { config_yaml: String },
    /// Legacy `--oidc-*` flags (already rendered, with `--`).
    Flags(Vec<String>),
}

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
    out.push_str("\n## Kanidm (applied through kanidm_client as idm_admin; the same plan as kanidm CLI commands)\n");
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
    out.push_str(&render_kubelogin(s, facts)?);
    out.push_str(&render_steps(s, facts, v)?);
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

/// Every step: what it changes in Kanidm (the planner's operations and the events' CLI
/// lines, in the order written), the API server's authentication when it changes, and
/// which token each expectation checks.
pub fn render_steps(s: &LoadedScenario, facts: &LabFacts, v: K8sVersion) -> Result<String> {
    use crate::scenario::model::Change;
    use crate::scenario::steps;
    let plans = steps::plan(&s.scenario).map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
    let mut out = String::new();
    let mut state = s.scenario.kanidm.clone();
    // Offline, a kept token's jti is a stand-in naming it.
    let mut facts = facts.clone();
    let mut points = vec![crate::scenario::steps::INITIAL.to_string()];
    points.extend(plans.iter().map(|p| p.step.name.value.clone()));
    let mut names: Vec<String> = s
        .scenario
        .kanidm
        .persons
        .iter()
        .map(|p| p.name.value.clone())
        .collect();
    for p in &plans {
        names.extend(p.renames.iter().map(|(_, n)| n.clone()));
    }
    for point in &points {
        for n in &names {
            facts.values.jtis.insert(
                format!("{point}:{n}"),
                format!("<jti of {n}'s token from {point}>"),
            );
        }
    }
    let facts = &facts;
    for (i, p) in plans.iter().enumerate() {
        out.push_str(&format!("\n## Step {}: {}\n", i + 1, p.step.name.value));
        if let Some(d) = &p.step.description {
            out.push_str(&format!("# {d}\n"));
        }
        for op in steps::ops(&state, p.step).map_err(|e| anyhow!("{e}"))? {
            match op {
                steps::StepOp::Reconcile(next) => {
                    match crate::kanidm::plan::plan(Some(&state), &next) {
                        Ok(plan) => plan
                            .ops
                            .iter()
                            .for_each(|op| out.push_str(&format!("{op}\n"))),
                        Err(why) => out.push_str(&format!("# cannot plan: {why}\n")),
                    }
                    state = next;
                }
                steps::StepOp::Event(ch) => {
                    for l in crate::kanidm::events::cli_lines(ch) {
                        out.push_str(&format!("{l}\n"));
                    }
                    if matches!(ch, Change::RenamePerson { .. }) {
                        steps::apply(&mut state, ch).map_err(|e| anyhow!("{e}"))?;
                    }
                }
            }
        }
        if p.api_server_changes {
            let at = steps::scenario_at(s, p);
            if p.step.restart_api_server {
                out.push_str("# the API server restarts\n");
            }
            match auth_setup(&at, facts, v)? {
                AuthSetup::Structured { config_yaml } => {
                    out.push_str("# API server authentication from this step on:\n");
                    out.push_str(&config_yaml);
                }
                AuthSetup::Flags(flags) => {
                    out.push_str("# API server flags from this step on:\n");
                    flags.iter().for_each(|f| out.push_str(&format!("{f}\n")));
                }
            }
        }
        for e in &p.step.expect {
            let token = match &e.token_from {
                Some(t) => format!("the token from {}", t.value),
                None => "a fresh login".into(),
            };
            out.push_str(&format!("# expect {} with {token}\n", e.person.value));
        }
    }
    Ok(out)
}

/// The Kanidm plan from an empty server, as the `kanidm` CLI lines a human would type: the
/// same operations, in the same order, that a run applies through `kanidm_client`.
pub fn kanidm_plan(s: &LoadedScenario) -> String {
    match crate::kanidm::plan::plan(None, &s.scenario.kanidm) {
        Ok(p) => p.ops.iter().map(|op| format!("{op}\n")).collect(),
        Err(why) => format!("# cannot plan: {why}\n"),
    }
}

/// `via: kubelogin`: the kubeconfig user every person gets (post 1's exec block, placeholders
/// resolved) or the `oidc-login setup` a run performs (post 2), and what the lab adds.
fn render_kubelogin(s: &LoadedScenario, facts: &LabFacts) -> Result<String> {
    use crate::scenario::model::LoginVia;
    let login = &s.scenario.login;
    let Some(k) = login
        .kubelogin
        .as_ref()
        .filter(|_| login.via == LoginVia::Kubelogin)
    else {
        return Ok(String::new());
    };
    let resolve = |w: &str| {
        crate::scenario::placeholder::resolve(w, &facts.values).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut out = String::from("\n## Login: kubelogin (int128/kubelogin, `kubectl oidc-login`)\n");
    out.push_str("# the lab adds --certificate-authority=<lab CA>, --browser-command=<lab browser hand-off>, --token-cache-dir=<lab>/kubelogin/cache/<state>/<person>\n");
    if let Some(e) = &k.exec {
        let b = &e.value;
        out.push_str("# each person's kubeconfig user:\nexec:\n");
        out.push_str(&format!(
            "  apiVersion: {}\n  command: {}\n  args:\n",
            b.api_version, b.command
        ));
        for a in &b.args {
            let v = resolve(&a.value)?;
            let plain = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./:=-".contains(c))
                && !v.starts_with('-') | v.starts_with("--");
            let shown = if plain {
                v
            } else {
                serde_json::Value::String(v).to_string()
            };
            out.push_str(&format!("  - {shown}\n"));
        }
        if let Some(m) = &b.interactive_mode {
            out.push_str(&format!("  interactiveMode: {m}\n"));
        }
    }
    if let Some(flags) = &k.setup {
        let words: Vec<String> = flags
            .value
            .iter()
            .map(|f| resolve(&f.value))
            .collect::<Result<_>>()?;
        out.push_str(&format!("kubectl oidc-login setup {}\n", words.join(" ")));
        out.push_str("# then the `kubectl config set-credentials …` command setup prints, run as printed; kubectl uses that user\n");
    }
    Ok(out)
}
