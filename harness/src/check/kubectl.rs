//! Real `kubectl` runs and how their results are classified.

use crate::scenario::action::{Action, Scope};
use anyhow::{Context, Result};
use std::path::Path;

/// What the API server decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// 403: authenticated, RBAC said no.
    Forbidden,
    /// 401: the token was rejected.
    Unauthorized,
    /// Something else went wrong (the message says what).
    Error(String),
}

impl Verdict {
    pub fn label(&self) -> &str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Forbidden => "Forbidden (403)",
            Verdict::Unauthorized => "Unauthorized (401)",
            Verdict::Error(_) => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KubectlRun {
    pub command: String,
    pub verdict: Verdict,
    pub stdout: String,
    pub stderr: String,
}

/// Classify a kubectl result by exit status and the stable parts of its error text.
pub fn classify(success: bool, stdout: &str, stderr: &str) -> Verdict {
    if success {
        return Verdict::Allowed;
    }
    if stderr.contains("You must be logged in to the server") || stderr.contains("Unauthorized") {
        return Verdict::Unauthorized;
    }
    if stderr.contains("(Forbidden)") || stderr.contains("is forbidden") {
        return Verdict::Forbidden;
    }
    // `auth can-i` answers "no" for a resource the API server does not serve, with only a
    // warning: that tests nothing, so it is an error, never "forbidden".
    if let Some(l) = stderr
        .lines()
        .find(|l| l.contains("the server doesn't have a resource type"))
    {
        return Verdict::Error(format!(
            "{} (check the action's resource name against `kubectl api-resources`)",
            l.trim().trim_start_matches("Warning: ")
        ));
    }
    // `auth can-i` says "no" on stdout with exit 1.
    if stdout.trim_start().starts_with("no") {
        return Verdict::Forbidden;
    }
    // Authorization passed, the object just is not there: the verb was allowed.
    if stderr.contains("(NotFound)") {
        return Verdict::Allowed;
    }
    Verdict::Error(
        stderr
            .trim()
            .lines()
            .last()
            .unwrap_or("kubectl failed")
            .to_string(),
    )
}

/// A kubeconfig file, the PATH its exec plugin resolves against (kubelogin's exec block
/// names `kubectl`, which finds `kubectl-oidc_login` on PATH; None: the harness's own), and
/// kubectl's discovery and HTTP cache (`--cache-dir`): ours, never the user's
/// `~/.kube/cache`, which every lab API server (a new port each) would grow by a directory.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    pub path: std::path::PathBuf,
    pub exec_path: Option<String>,
    pub cache_dir: std::path::PathBuf,
}

impl Kubeconfig {
    /// `path`, its kubectl cache in `cache_dir` (a directory the caller owns and removes).
    pub fn file(
        path: impl Into<std::path::PathBuf>,
        cache_dir: impl Into<std::path::PathBuf>,
    ) -> Kubeconfig {
        Kubeconfig {
            path: path.into(),
            exec_path: None,
            cache_dir: cache_dir.into(),
        }
    }
}

/// A whole kubectl run (exec plugin included) never takes longer than this.
const KUBECTL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn run(kubectl: &Path, kubeconfig: &Kubeconfig, args: &[String]) -> Result<KubectlRun> {
    let mut cmd = tokio::process::Command::new(kubectl);
    crate::process::die_with_parent(cmd.as_std_mut());
    if let Some(p) = &kubeconfig.exec_path {
        cmd.env("PATH", p);
    }
    cmd.envs(crate::process::go_collector_off(
        crate::process::KUBECTL_HEAP_MIB,
    ));
    let child = cmd
        .arg(format!("--kubeconfig={}", kubeconfig.path.display()))
        .arg(format!("--cache-dir={}", kubeconfig.cache_dir.display()))
        .args(["--request-timeout=10s"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(KUBECTL_DEADLINE, child)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "`kubectl {}` did not finish within {} s",
                args.join(" "),
                KUBECTL_DEADLINE.as_secs()
            )
        })?
        .context("running kubectl")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok(KubectlRun {
        command: format!("kubectl {}", args.join(" ")),
        verdict: classify(out.status.success(), &stdout, &stderr),
        stdout,
        stderr,
    })
}

/// `kubectl auth whoami -o json`: who the API server thinks the token is.
pub async fn whoami(kubectl: &Path, kubeconfig: &Kubeconfig) -> Result<KubectlRun> {
    run(
        kubectl,
        kubeconfig,
        &["auth".into(), "whoami".into(), "-o".into(), "json".into()],
    )
    .await
}

/// kubectl arguments that perform `action` for real (mutations as server-side dry runs),
/// or `auth can-i` for verbs kubectl cannot perform directly.
pub fn args_for(action: &Action) -> Vec<String> {
    let mut args: Vec<String> = match action.verb.as_str() {
        "list" => vec![
            "get".into(),
            action.resource.clone(),
            "-o".into(),
            "name".into(),
        ],
        "get" => {
            let mut a = vec!["get".into(), action.resource.clone()];
            a.extend(action.name.clone());
            a.extend(["-o".into(), "name".into()]);
            a
        }
        "delete" => {
            let mut a = vec!["delete".into(), action.resource.clone()];
            a.extend(action.name.clone());
            a.extend(["--dry-run=server".into(), "--wait=false".into()]);
            a
        }
        "create" if matches!(action.resource.as_str(), "namespace" | "namespaces" | "ns") => {
            vec![
                "create".into(),
                "namespace".into(),
                action.name.clone().unwrap_or_else(|| "lab-dry-run".into()),
                "--dry-run=server".into(),
            ]
        }
        _ => can_i(action),
    };
    args.extend(scope_args(&action.scope));
    args
}

/// `kubectl auth can-i <verb> <resource> [name] [-n ns | -A]`: only asks.
pub fn can_i_args(action: &Action) -> Vec<String> {
    let mut a = can_i(action);
    a.extend(scope_args(&action.scope));
    a
}

fn can_i(action: &Action) -> Vec<String> {
    let mut a = vec![
        "auth".into(),
        "can-i".into(),
        action.verb.clone(),
        action.resource.clone(),
    ];
    a.extend(action.name.clone());
    a
}

fn scope_args(scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Default => Vec::new(),
        Scope::Namespace(ns) => vec!["-n".into(), ns.clone()],
        Scope::AllNamespaces => vec!["-A".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_kubectl_messages() {
        // Texts from k8s-authn-facts.md §3.3 and verified-by-running.md.
        assert_eq!(
            classify(
                false,
                "",
                "error: You must be logged in to the server (Unauthorized)\n"
            ),
            Verdict::Unauthorized
        );
        assert_eq!(
            classify(
                false,
                "",
                "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
            ),
            Verdict::Unauthorized
        );
        assert_eq!(
            classify(
                false,
                "",
                r#"Error from server (Forbidden): namespaces "t1" is forbidden: User "alice@localhost" cannot delete resource "namespaces""#
            ),
            Verdict::Forbidden
        );
        assert_eq!(classify(false, "no\n", ""), Verdict::Forbidden);
        assert_eq!(classify(true, "pod/x\n", ""), Verdict::Allowed);
        assert!(matches!(
            classify(false, "", "error: connection refused"),
            Verdict::Error(_)
        ));
    }

    #[test]
    fn mutations_are_dry_runs() {
        let a = args_for(&Action::parse("delete namespace scratch").unwrap());
        assert_eq!(
            a,
            [
                "delete",
                "namespace",
                "scratch",
                "--dry-run=server",
                "--wait=false"
            ]
        );
        let l = args_for(&Action::parse("list pods -A").unwrap());
        assert_eq!(l, ["get", "pods", "-o", "name", "-A"]);
        let w = args_for(&Action::parse("watch secrets -n default").unwrap());
        assert_eq!(w, ["auth", "can-i", "watch", "secrets", "-n", "default"]);
    }

    #[test]
    fn can_i_on_an_unknown_resource_is_an_error_not_forbidden() {
        let v = classify(
            false,
            "no\n",
            "Warning: the server doesn't have a resource type 'podz'\n",
        );
        assert!(
            matches!(&v, Verdict::Error(m) if m.contains("podz")),
            "{v:?}"
        );
        assert_eq!(classify(false, "no\n", ""), Verdict::Forbidden);
    }
}
