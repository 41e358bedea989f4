//! Reading kube-apiserver's `/metrics` for the structured authentication config: how many
//! automatic reloads succeeded or failed, and which config it runs now.

use sha2::{Digest, Sha256};

const RELOADS: &str = "apiserver_authentication_config_controller_automatic_reloads_total";
const LAST_CONFIG: &str = "apiserver_authentication_config_controller_last_config_info";

/// What the metrics say about the authentication config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfigMetrics {
    pub successes: u64,
    pub failures: u64,
    /// `sha256:<hex>` of the config the API server runs (1.36 exports it; 1.33 does not).
    pub running_hash: Option<String>,
}

/// Parse a Prometheus text exposition.
pub fn parse(metrics: &str) -> AuthConfigMetrics {
    let mut m = AuthConfigMetrics::default();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| v as u64)
                .unwrap_or(0)
        };
        if line.starts_with(RELOADS) {
            if line.contains("status=\"success\"") {
                m.successes += value();
            } else if line.contains("status=\"failure\"") {
                m.failures += value();
            }
        } else if line.starts_with(LAST_CONFIG)
            && let Some(h) = label(line, "hash")
            && !h.is_empty()
        {
            m.running_hash = Some(h.to_string());
        }
    }
    m
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find('{')?;
    let end = line[start..].find('}')? + start;
    line[start + 1..end].split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The hash kube-apiserver reports for a config file's content.
pub fn config_hash(config: &str) -> String {
    let d = Sha256::digest(config.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// How a reload attempt ended, judged from metrics before and after writing `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadVerdict {
    /// The API server runs the new config.
    Applied,
    /// It tried and kept the old config (an authenticator that cannot initialise, …).
    Failed,
    /// Nothing yet.
    Pending,
}

pub fn judge_reload(
    before: &AuthConfigMetrics,
    now: &AuthConfigMetrics,
    config: &str,
) -> ReloadVerdict {
    if let Some(h) = &now.running_hash {
        // Exact where exported: the running config is ours, whatever the counters say.
        if *h == config_hash(config) {
            return ReloadVerdict::Applied;
        }
    } else if now.successes > before.successes {
        return ReloadVerdict::Applied;
    }
    if now.failures > before.failures {
        return ReloadVerdict::Failed;
    }
    ReloadVerdict::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
apiserver_authentication_config_controller_automatic_reloads_total{apiserver_id_hash=\"sha256:ab\",status=\"failure\"} 2\n\
apiserver_authentication_config_controller_automatic_reloads_total{apiserver_id_hash=\"sha256:ab\",status=\"success\"} 3\n\
apiserver_authentication_config_controller_last_config_info{apiserver_id_hash=\"sha256:ab\",hash=\"sha256:0011\"} 1\n\
apiserver_authentication_config_controller_automatic_reload_last_timestamp_seconds{apiserver_id_hash=\"sha256:ab\",status=\"success\"} 1.7e+09\n";

    #[test]
    fn counters_and_running_hash() {
        let m = parse(TEXT);
        assert_eq!(m.successes, 3);
        assert_eq!(m.failures, 2);
        assert_eq!(m.running_hash.as_deref(), Some("sha256:0011"));
        assert_eq!(parse(""), AuthConfigMetrics::default());
    }

    #[test]
    fn hash_matches_kube_apiserver_format() {
        // sha256("") is well known; kube-apiserver prints "sha256:<hex>".
        assert_eq!(
            config_hash(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn reload_verdicts() {
        let cfg = "jwt: []\n";
        let before = AuthConfigMetrics {
            successes: 1,
            failures: 0,
            running_hash: Some("sha256:old".into()),
        };
        // Exported hash decides when present: a success of some other write is not ours.
        let other = AuthConfigMetrics {
            successes: 2,
            running_hash: Some("sha256:other".into()),
            ..before.clone()
        };
        assert_eq!(judge_reload(&before, &other, cfg), ReloadVerdict::Pending);
        let ours = AuthConfigMetrics {
            running_hash: Some(config_hash(cfg)),
            ..before.clone()
        };
        assert_eq!(judge_reload(&before, &ours, cfg), ReloadVerdict::Applied);
        let failed = AuthConfigMetrics {
            failures: 1,
            ..before.clone()
        };
        assert_eq!(judge_reload(&before, &failed, cfg), ReloadVerdict::Failed);
        // Older API servers: counters only.
        let old_before = AuthConfigMetrics::default();
        let old_ok = AuthConfigMetrics {
            successes: 1,
            ..Default::default()
        };
        assert_eq!(
            judge_reload(&old_before, &old_ok, cfg),
            ReloadVerdict::Applied
        );
        assert_eq!(
            judge_reload(&old_before, &old_before, cfg),
            ReloadVerdict::Pending
        );
    }
}
