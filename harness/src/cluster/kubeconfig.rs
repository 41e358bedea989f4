//! kubeconfig files for the admin (client certificate) and for people (bearer id_token or
//! the exec credential plugin).

use anyhow::Result;
use serde_json::json;
use std::path::Path;

pub enum UserAuth<'a> {
    ClientCert {
        cert: &'a Path,
        key: &'a Path,
    },
    Token(&'a str),
    /// `client.authentication.k8s.io/v1` exec plugin: command and args.
    Exec {
        command: &'a str,
        args: Vec<String>,
    },
    /// An exec block exactly as given (kubelogin's, from a scenario or `oidc-login setup`).
    ExecBlock {
        api_version: &'a str,
        command: &'a str,
        args: &'a [String],
        interactive_mode: Option<&'a str>,
    },
}

/// Write a one-context kubeconfig (mode 0600: it may hold a token).
pub fn write(
    path: &Path,
    server: &str,
    ca_file: &Path,
    user: &str,
    auth: UserAuth<'_>,
) -> Result<()> {
    let user_obj = match auth {
        UserAuth::ClientCert { cert, key } => json!({
            "client-certificate": cert.to_string_lossy(), "client-key": key.to_string_lossy() }),
        UserAuth::Token(t) => json!({ "token": t }),
        UserAuth::Exec { command, args } => json!({ "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": command, "args": args, "interactiveMode": "Never",
            "provideClusterInfo": false }}),
        UserAuth::ExecBlock {
            api_version,
            command,
            args,
            interactive_mode,
        } => {
            let mut exec = json!({ "apiVersion": api_version, "command": command, "args": args });
            if let Some(m) = interactive_mode {
                exec["interactiveMode"] = json!(m);
            }
            json!({ "exec": exec })
        }
    };
    let doc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority": ca_file.to_string_lossy()}}],
        "users": [{"name": user, "user": user_obj}],
        "contexts": [{"name": user, "context": {"cluster": "lab", "user": user}}],
        "current-context": user,
    });
    let text =
        serde_saphyr::to_string(&doc).map_err(|e| anyhow::anyhow!("kubeconfig yaml: {e}"))?;
    crate::pki::write_secret(path, &text)
}
