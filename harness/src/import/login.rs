//! How the user's people log in, as the scenario's `login:` section: their kubeconfig's
//! kubelogin exec block (post 1) or the `kubectl oidc-login setup` they ran (post 2), with
//! the flags the lab owns taken out and their issuer made the lab's. Pure.

use super::rewrite::{Log, Origin};
use crate::scenario::kubelogin as kl;
use serde_json::{Value, json};

/// Flags the lab sets itself, dropped from the user's arguments (and said so).
const LAB_OWNED: [&str; 5] = [
    "token-cache-dir",
    "certificate-authority",
    "certificate-authority-data",
    "browser-command",
    "force-refresh",
];
/// Flags the lab refuses; dropped, and said so.
const DROPPED: [&str; 3] = [
    "insecure-skip-tls-verify",
    "skip-open-browser",
    "oidc-client-secret",
];

/// The user's kubelogin arguments (after `get-token` / `setup`), with lab-owned and refused
/// flags removed and the issuer rewritten.
pub fn clean_args(
    args: &[String],
    origin: &Origin,
    log: &mut Log,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(flag) = a.strip_prefix("--") else {
            out.push(a.clone());
            i += 1;
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let is_bool = matches!(
            name,
            "insecure-skip-tls-verify" | "skip-open-browser" | "force-refresh"
        );
        let takes_next = inline.is_none() && !is_bool;
        if LAB_OWNED.contains(&name) || DROPPED.contains(&name) {
            notes.push(format!(
                "kubelogin `--{name}`: {}",
                if LAB_OWNED.contains(&name) {
                    "the lab sets its own"
                } else {
                    "the lab refuses it (TLS verified, browser driven, public client)"
                }
            ));
            i += if takes_next { 2 } else { 1 };
            continue;
        }
        if name == "oidc-issuer-url" {
            let v = match &inline {
                Some(v) => v.clone(),
                None => args.get(i + 1).cloned().unwrap_or_default(),
            };
            out.push(format!("--oidc-issuer-url={}", origin.subject(&v, log)));
            i += if takes_next { 2 } else { 1 };
            continue;
        }
        out.push(a.clone());
        if takes_next && let Some(v) = args.get(i + 1) {
            out.push(v.clone());
            i += 1;
        }
        i += 1;
    }
    out
}

/// The kubelogin exec block of a kubeconfig user: (apiVersion, args after `oidc-login`,
/// interactiveMode). Err: why it is not kubelogin.
pub fn exec_block(exec: &Value) -> Result<(String, Vec<String>, Option<String>), String> {
    let command = exec["command"].as_str().unwrap_or("");
    let args: Vec<String> = exec["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let base = command.rsplit('/').next().unwrap_or(command);
    let rest = match base {
        "kubectl" if args.first().map(String::as_str) == Some("oidc-login") => args[1..].to_vec(),
        "kubectl-oidc_login" | "kubelogin" => args,
        _ => {
            return Err(format!(
                "the exec plugin is `{command} {}`, not kubelogin",
                args.first().map(String::as_str).unwrap_or("")
            ));
        }
    };
    Ok((
        exec["apiVersion"]
            .as_str()
            .unwrap_or("client.authentication.k8s.io/v1beta1")
            .to_string(),
        rest,
        exec["interactiveMode"].as_str().map(str::to_string),
    ))
}

/// `login:` through kubelogin (when the lab has it) or the built-in client with the scopes
/// kubelogin would have asked for.
pub fn section(
    client: &str,
    api_version: &str,
    sub_and_args: &[String],
    interactive: Option<&str>,
    setup: bool,
    kubelogin_found: bool,
    notes: &mut Vec<String>,
) -> Result<Value, String> {
    let mut full = vec!["oidc-login".to_string()];
    full.extend(sub_and_args.iter().cloned());
    let parsed = kl::parse("kubectl", &full).map_err(|e| e.message)?;
    if kubelogin_found {
        if setup {
            return Ok(
                json!({"client": client, "via": "kubelogin", "kubelogin": {"setup": sub_and_args[1..].to_vec()}}),
            );
        }
        let mut exec = json!({"apiVersion": api_version, "command": "kubectl", "args": full});
        if let Some(m) = interactive {
            exec["interactiveMode"] = json!(m);
        }
        return Ok(json!({"client": client, "via": "kubelogin", "kubelogin": {"exec": exec}}));
    }
    let mut scopes: Vec<String> = vec!["openid".into()];
    for s in parsed
        .extra_scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
    {
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    notes.push("kubelogin is not found on this machine: the lab's built-in client stands in, asking for the scopes kubelogin would (install it, `cargo xtask setup`, and import again for `via: kubelogin`)".into());
    Ok(json!({"client": client, "scopes": scopes}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_1s_exec_block_keeps_its_flags_and_loses_the_labs() {
        let exec = json!({"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubectl",
            "args": ["oidc-login", "get-token", "--oidc-issuer-url", "https://<MY KANIDM ADDRESS>/oauth2/openid/k8s",
                     "--oidc-client-id", "k8s", "--oidc-extra-scope", "openid profile groups email",
                     "--token-cache-dir", "/home/me/.kube/cache"]});
        let (v, args, mode) = exec_block(&exec).unwrap();
        assert_eq!(
            (v.as_str(), mode),
            ("client.authentication.k8s.io/v1beta1", None)
        );
        let origin = Origin {
            issuer: Some("https://<MY KANIDM ADDRESS>/oauth2/openid/k8s".into()),
            client: Some("k8s".into()),
            domain: Some("<MY KANIDM ADDRESS>".into()),
            ..Default::default()
        };
        let (mut log, mut notes) = (Log::default(), Vec::new());
        let clean = clean_args(&args, &origin, &mut log, &mut notes);
        assert_eq!(
            clean,
            [
                "get-token",
                "--oidc-issuer-url=${issuer:k8s}",
                "--oidc-client-id",
                "k8s",
                "--oidc-extra-scope",
                "openid profile groups email"
            ]
        );
        assert!(notes[0].contains("--token-cache-dir"));
        let l = section("k8s", &v, &clean, None, false, false, &mut notes).unwrap();
        assert_eq!(l["scopes"], json!(["openid", "profile", "groups", "email"]));
        let l = section("k8s", &v, &clean, None, false, true, &mut notes).unwrap();
        assert_eq!(l["via"], "kubelogin");
        assert!(exec_block(&json!({"command": "aws", "args": ["eks"]})).is_err());
    }
}
