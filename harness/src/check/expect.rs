//! Reading the API server's answers: readiness with a real token, the 401 cause from its
//! log, and `whoami` against an expectation.

use super::cause::{Cause, auth_error_of, init_failure_of};
use super::kubectl::{self, KubectlRun, Verdict};
use crate::cluster::ClusterBackend;
use crate::scenario::model::WhoamiExpect;
use crate::scenario::placeholder::{self, Values};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};

/// The latest discovery failure in the current API server log.
pub fn last_init_failure(cluster: &impl ClusterBackend) -> Option<(Cause, String)> {
    let mut whole = cluster.log_mark();
    whole.offset = 0;
    cluster
        .log_lines_since(&whole)
        .iter()
        .rev()
        .find_map(|l| init_failure_of(l))
}

pub fn find_auth_line(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .rev()
        .find(|l| l.contains("Unable to authenticate the request"))
        .cloned()
}

/// Discovery runs asynchronously after start: wait with a real token until the API server
/// answers with anything but "authenticator not initialized".
pub async fn wait_oidc_ready(cluster: &impl ClusterBackend, kubeconfig_path: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        let mark = cluster.log_mark();
        let run = kubectl::run(
            kubeconfig_path,
            &["auth".into(), "whoami".into(), "-o".into(), "json".into()],
        )
        .await?;
        if run.verdict != Verdict::Unauthorized {
            return Ok(());
        }
        let cause = find_auth_line(&cluster.log_lines_since(&mark))
            .as_deref()
            .and_then(auth_error_of)
            .as_deref()
            .and_then(Cause::classify);
        if cause.is_some() && cause != Some(Cause::AuthenticatorNotInitialized) {
            return Ok(());
        }
        // A discovery failure that is not a transient connection problem (an untrusted
        // CA, a wrong issuer) will not heal: this API server process logged it.
        if let Some((c, _)) = last_init_failure(cluster)
            && c != Cause::AuthenticatorNotInitialized
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(45) {
            return Ok(()); // the check itself reports the cause
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn check_whoami(
    run: &KubectlRun,
    w: &WhoamiExpect,
    values: &Values,
) -> (bool, String, Option<String>) {
    if run.verdict != Verdict::Allowed {
        return (
            false,
            run.verdict.label().to_string(),
            Some(format!(
                "`kubectl auth whoami` failed: {}",
                run.stderr.trim()
            )),
        );
    }
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    let username = v["status"]["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let groups: Vec<String> = v["status"]["userInfo"]["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    let resolve = |t: &String| placeholder::resolve(t, values).unwrap_or_else(|e| e);
    if let Some(u) = &w.username {
        let want = resolve(u);
        if want != username {
            problems.push(format!("username is `{username}`, expected `{want}`"));
        }
    }
    for g in &w.groups_include {
        let want = resolve(g);
        if !groups.contains(&want) {
            problems.push(format!("group `{want}` missing"));
        }
    }
    for g in &w.groups_exclude {
        let want = resolve(g);
        if groups.contains(&want) {
            problems.push(format!("group `{want}` present but must not be"));
        }
    }
    let shown: Vec<&str> = groups
        .iter()
        .filter(|g| !looks_like_uuid(g.rsplit(':').next().unwrap_or(g)))
        .map(String::as_str)
        .collect();
    let hidden = groups.len() - shown.len();
    let more = if hidden > 0 {
        format!(" (+{hidden} UUIDs)")
    } else {
        String::new()
    };
    let actual = format!("user {username}, groups [{}]{more}", shown.join(", "));
    if problems.is_empty() {
        (true, actual, None)
    } else {
        (false, actual, Some(problems.join("; ")))
    }
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && s.matches('-').count() == 4
}
