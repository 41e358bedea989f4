//! Where the API server's authentication comes from (a config file, flags, a static pod
//! manifest), and the one entry point that turns any of them into authenticators.

use super::InputError;
use super::config::{Authenticator, from_config};
use super::flags::{from_words, manifest_words};
use crate::render::K8sVersion;
use std::path::PathBuf;

/// Where the user's authentication comes from.
#[derive(Debug, Clone)]
pub enum AuthSource {
    /// An `AuthenticationConfiguration` file.
    ConfigFile(PathBuf),
    /// The same, already read (the harness's own rendered config).
    ConfigText { text: String, origin: String },
    /// `--oidc-*` flags as written on a command line (other flags are ignored).
    Flags(String),
    /// A kube-apiserver static pod manifest.
    Manifest(PathBuf),
}

/// The authenticators of `source`, validated for `minor`. `ca_override` (`--ca`) replaces
/// every authenticator's CA, and lets flags' `--oidc-ca-file` point at a file not on this machine.
pub fn load(
    source: &AuthSource,
    minor: K8sVersion,
    ca_override: Option<&str>,
) -> Result<Vec<Authenticator>, InputError> {
    let mut auths = match source {
        AuthSource::ConfigFile(p) => {
            let text = super::read_text(p)?;
            from_config(&text, &p.display().to_string(), minor)?
        }
        AuthSource::ConfigText { text, origin } => from_config(text, origin, minor)?,
        AuthSource::Flags(s) => {
            let words = shlex::split(s)
                .ok_or_else(|| InputError("--oidc-flags: unbalanced quotes in the flags".into()))?;
            super::flags::from_words(&words, "--oidc-flags", minor, ca_override.is_some())?
        }
        AuthSource::Manifest(p) => {
            let words = manifest_words(p)?;
            from_words(
                &words,
                &p.display().to_string(),
                minor,
                ca_override.is_some(),
            )?
        }
    };
    if let Some(ca) = ca_override {
        for a in &mut auths {
            a.ca_pem = Some(ca.to_string());
            a.ca_origin = "--ca".into();
        }
    }
    Ok(auths)
}

/// The `--oidc-*` flags an API server runs with, as one string for [`AuthSource::Flags`],
/// with its `--oidc-ca-file` (a path where the API server runs, e.g. inside a kind node)
/// pointing at the same CA on this machine.
pub fn flags_here(flags: &[String], apiserver_ca: &str, host_ca: &std::path::Path) -> String {
    let theirs = format!("--oidc-ca-file={apiserver_ca}");
    let words: Vec<String> = flags
        .iter()
        .map(|f| match *f == theirs {
            true => format!("--oidc-ca-file={}", host_ca.display()),
            false => f.clone(),
        })
        .collect();
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One shell word: as it is when it needs no quoting (flags, URLs, paths), else single-quoted.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && !w.starts_with('#')
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%#".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_here_reads_back_as_the_same_words_and_quotes_only_what_needs_it() {
        let flags = vec![
            "--oidc-issuer-url=https://localhost:1/oauth2/openid/k8s".to_string(),
            "--oidc-ca-file=/node/ca.pem".into(),
            "--oidc-username-prefix=a b'c".into(),
        ];
        let s = flags_here(&flags, "/node/ca.pem", std::path::Path::new("/host/ca.pem"));
        assert!(s.starts_with("--oidc-issuer-url=https://localhost:1/oauth2/openid/k8s --oidc-ca-file=/host/ca.pem '"), "{s}");
        assert_eq!(
            shlex::split(&s).unwrap(),
            [
                "--oidc-issuer-url=https://localhost:1/oauth2/openid/k8s",
                "--oidc-ca-file=/host/ca.pem",
                "--oidc-username-prefix=a b'c"
            ]
        );
    }
}
