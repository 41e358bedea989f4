//! `--oidc-*` flags, as written on a command line or in a kube-apiserver static pod manifest,
//! turned into the one JWT authenticator the API server builds from them (with the flags'
//! defaults: RS256 only, username claim `sub` prefixed `<issuer>#`), or into the
//! authenticators of the `--authentication-config` file they name.

use super::InputError;
use super::config::{
    ALL_SIGNING_ALGS, Authenticator, ClaimRule, Mapping, check_url, from_config, refused,
};
use crate::render::K8sVersion;
use std::path::Path;

/// The JWT authenticator that `--oidc-*` flags among `words` make, or the one the
/// `--authentication-config` file they name makes. Other flags are ignored.
pub fn from_words(
    words: &[String],
    origin: &str,
    minor: K8sVersion,
    have_ca: bool,
) -> Result<Vec<Authenticator>, InputError> {
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if let Some(rest) = w.strip_prefix("--") {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None if is_oidc_or_config(rest) => {
                    let v = words
                        .get(i + 1)
                        .cloned()
                        .ok_or_else(|| InputError(format!("{origin}: --{rest} has no value")))?;
                    i += 1;
                    (rest.to_string(), v)
                }
                None => (rest.to_string(), String::new()),
            };
            flags.push((name, value));
        }
        i += 1;
    }
    let config_file = flags
        .iter()
        .find(|(n, _)| n == "authentication-config")
        .map(|(_, v)| v.clone());
    let oidc: Vec<&(String, String)> = flags
        .iter()
        .filter(|(n, _)| n.starts_with("oidc-"))
        .collect();
    if let Some(path) = config_file {
        if !oidc.is_empty() {
            return Err(InputError(format!(
                "{origin}: the API server refuses to start: authentication-config file and oidc-* flags are mutually exclusive"
            )));
        }
        let p = Path::new(&path);
        let text = super::read_text(p).map_err(|e| {
            InputError(format!(
                "{origin} points at --authentication-config={path}, which cannot be read here ({e}); copy it from the control-plane node and pass it with --auth-config <file>"
            ))
        })?;
        return from_config(&text, &path, minor);
    }
    if oidc.is_empty() {
        return Err(InputError(format!(
            "{origin}: no --oidc-* flags and no --authentication-config: this API server has no OIDC authentication, so every Kanidm token gets 401 (invalid bearer token)"
        )));
    }
    let mut issuer = None;
    let mut client_id = None;
    let mut ca_file = None;
    let mut username_claim = None;
    let mut username_prefix = None;
    let mut groups_claim = None;
    let mut groups_prefix = None;
    let mut algs: Option<Vec<String>> = None;
    let mut required = Vec::new();
    for (name, value) in oidc {
        let v = value.clone();
        match name.as_str() {
            "oidc-issuer-url" => issuer = Some(v),
            "oidc-client-id" => client_id = Some(v),
            "oidc-ca-file" => ca_file = Some(v),
            "oidc-username-claim" => username_claim = Some(v),
            "oidc-username-prefix" => username_prefix = Some(v),
            "oidc-groups-claim" => groups_claim = Some(v),
            "oidc-groups-prefix" => groups_prefix = Some(v),
            "oidc-signing-algs" => {
                let list: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                for a in &list {
                    if !ALL_SIGNING_ALGS.contains(&a.as_str()) {
                        return Err(InputError(format!(
                            "{origin}: the API server refuses to start: oidc: unsupported signing alg: {a:?} (allowed: {})",
                            ALL_SIGNING_ALGS.join(", ")
                        )));
                    }
                }
                algs = Some(list);
            }
            "oidc-required-claim" => {
                for pair in v.split(',').filter(|p| !p.is_empty()) {
                    let (k, val) = pair.split_once('=').ok_or_else(|| {
                        InputError(format!(
                            "{origin}: --oidc-required-claim={v}: write it as claim=value"
                        ))
                    })?;
                    required.push(ClaimRule::Required {
                        claim: k.to_string(),
                        value: val.to_string(),
                    });
                }
            }
            other => {
                return Err(InputError(format!(
                    "{origin}: --{other} is not a kube-apiserver flag; the --oidc-* flags are issuer-url, client-id, ca-file, username-claim, username-prefix, groups-claim, groups-prefix, signing-algs, required-claim"
                )));
            }
        }
    }
    let (Some(issuer), Some(client_id)) = (issuer, client_id) else {
        return Err(InputError(format!(
            "{origin}: the API server refuses to start: oidc-issuer-url and oidc-client-id must be specified together"
        )));
    };
    let mut errs = Vec::new();
    check_url(&issuer, "--oidc-issuer-url", &mut errs);
    refused(origin, errs)?;
    let claim = username_claim.unwrap_or_else(|| "sub".into());
    // The flags' defaults: a non-email claim is prefixed `<issuer>#`; `-` means no prefix.
    let prefix = match username_prefix.as_deref() {
        Some("-") => String::new(),
        Some(p) => p.to_string(),
        None if claim == "email" => String::new(),
        None => format!("{issuer}#"),
    };
    let ca_pem = match &ca_file {
        Some(f) if !have_ca => Some(super::read_text(Path::new(f)).map_err(|e| {
            InputError(format!(
                "--oidc-ca-file={f} cannot be read here ({e}); pass the same CA with --ca <file>"
            ))
        })?),
        _ => None,
    };
    Ok(vec![Authenticator {
        label: "--oidc-* flags".into(),
        issuer_url: issuer,
        discovery_url: None,
        audiences: vec![client_id],
        audience_match_policy: None,
        ca_origin: match &ca_file {
            Some(f) => format!("--oidc-ca-file={f}"),
            None => "the system roots (no --oidc-ca-file)".into(),
        },
        ca_pem,
        signing_algs: algs.unwrap_or_else(|| vec!["RS256".into()]),
        legacy_flags: true,
        claim_rules: required,
        username: Mapping::Claim { claim, prefix },
        groups: groups_claim.map(|claim| Mapping::Claim {
            claim,
            prefix: groups_prefix.unwrap_or_default(),
        }),
        uid: None,
        extra: Vec::new(),
        user_rules: Vec::new(),
        egress_selector: None,
    }])
}

fn is_oidc_or_config(name: &str) -> bool {
    name.starts_with("oidc-") || name == "authentication-config"
}

/// The kube-apiserver container's command and args from a static pod manifest.
pub(super) fn manifest_words(path: &Path) -> Result<Vec<String>, InputError> {
    use k8s_openapi::api::core::v1::Pod;
    let text = super::read_text(path)?;
    let pod: Pod = serde_saphyr::from_str(&text).map_err(|e| {
        InputError(format!(
            "{}: not a Pod manifest: {}",
            path.display(),
            crate::input_file::yaml_error(&e)
        ))
    })?;
    let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
    let words = |c: &k8s_openapi::api::core::v1::Container| {
        let mut w = c.command.clone().unwrap_or_default();
        w.extend(c.args.clone().unwrap_or_default());
        w
    };
    containers
        .iter()
        .find(|c| c.name == "kube-apiserver")
        .or_else(|| {
            containers
                .iter()
                .find(|c| words(c).iter().any(|w| w.ends_with("kube-apiserver")))
        })
        .map(words)
        .ok_or_else(|| {
            InputError(format!(
                "{}: no kube-apiserver container in this Pod (looked for a container named kube-apiserver or running it)",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(m: u32) -> K8sVersion {
        K8sVersion { minor: m }
    }

    #[test]
    fn flags_have_the_legacy_defaults() {
        let words: Vec<String> = shlex::split(
            "kube-apiserver --secure-port=6443 --oidc-issuer-url https://idm.example.com/oauth2/openid/k8s --oidc-client-id=k8s --oidc-groups-claim=groups",
        )
        .unwrap();
        let a = &from_words(&words, "flags", v(36), false).unwrap()[0];
        assert_eq!(a.signing_algs, ["RS256"]);
        assert_eq!(
            a.username,
            Mapping::Claim {
                claim: "sub".into(),
                prefix: "https://idm.example.com/oauth2/openid/k8s#".into()
            }
        );
        let dash: Vec<String> = [
            "--oidc-issuer-url=https://x/y",
            "--oidc-client-id=k",
            "--oidc-username-prefix=-",
            "--oidc-signing-algs=ES256,RS256",
        ]
        .map(String::from)
        .to_vec();
        let a = &from_words(&dash, "flags", v(36), false).unwrap()[0];
        assert_eq!(a.signing_algs, ["ES256", "RS256"]);
        assert!(matches!(&a.username, Mapping::Claim { prefix, .. } if prefix.is_empty()));
        for (bad, want) in [
            (
                "--oidc-issuer-url=https://x/y",
                "must be specified together",
            ),
            (
                "--oidc-issuer-url=https://x --oidc-client-id=k --oidc-signing-algs=HS256",
                "unsupported signing alg",
            ),
            (
                "--oidc-issuer-url=https://x --oidc-client-id=k --oidc-nope=1",
                "not a kube-apiserver flag",
            ),
            ("--secure-port=1", "no --oidc-* flags"),
            (
                "--oidc-issuer-url=https://x --oidc-client-id=k --authentication-config=/a",
                "mutually exclusive",
            ),
        ] {
            let words = shlex::split(bad).unwrap();
            let err = from_words(&words, "flags", v(36), false).unwrap_err().0;
            assert!(err.contains(want), "{bad}: {err}");
        }
    }
}
