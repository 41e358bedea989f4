//! Observing the API server: readiness with a real token, and why it answered 401 (its
//! own log line, or an authenticator's discovery error). The judges are in `check::judge`.

use super::cause::{Cause, auth_error_of, classify, init_failure_of};
use super::kubectl::{self, KubectlRun, Verdict};
use crate::cluster::ClusterBackend;
use anyhow::Result;

use std::time::Duration;

/// The latest discovery failure in the current API server log.
pub async fn last_init_failure(cluster: &impl ClusterBackend) -> Option<(Cause, String)> {
    let mut whole = cluster.log_mark().await;
    whole.offset = 0;
    cluster
        .log_lines_since(&whole)
        .await
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
#[derive(Debug, thiserror::Error)]
#[error("OIDC not ready after {0} s")]
struct NotReady(u64);

/// Gives up quietly after 45 s: the check that follows reports the cause.
pub async fn wait_oidc_ready(
    cluster: &impl ClusterBackend,
    kubeconfig_path: &kubectl::Kubeconfig,
) -> Result<()> {
    let settled = crate::wait::until(
        Duration::from_secs(45),
        Duration::from_millis(250),
        || oidc_settled(cluster, kubeconfig_path),
        |after| NotReady(after.as_secs()).into(),
    )
    .await;
    match settled {
        Ok(()) => Ok(()),
        // Still "not initialized" at the deadline: the check itself says so.
        Err(e) if e.is::<NotReady>() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Has the API server's answer to a real token stopped being "authenticator not initialized"
/// (accepted, or rejected for a reason that will not heal)?
async fn oidc_settled(
    cluster: &impl ClusterBackend,
    kubeconfig_path: &kubectl::Kubeconfig,
) -> Result<Option<()>> {
    let mark = cluster.log_mark().await;
    let run = kubectl::whoami(cluster.kubectl(), kubeconfig_path).await?;
    if run.verdict != Verdict::Unauthorized {
        return Ok(Some(()));
    }
    let cause = find_auth_line(&cluster.log_lines_since(&mark).await)
        .as_deref()
        .and_then(auth_error_of)
        .as_deref()
        .and_then(classify);
    if cause.is_some() && cause != Some(Cause::AuthenticatorNotInitialized) {
        return Ok(Some(()));
    }
    // A discovery failure that is not a transient connection problem (an untrusted
    // CA, a wrong issuer) will not heal: this API server process logged it.
    let hopeless = last_init_failure(cluster)
        .await
        .is_some_and(|(c, _)| c != Cause::AuthenticatorNotInitialized);
    Ok(hopeless.then_some(()))
}

/// How long a 401's log line may take to show. A kind node's container log is written by
/// containerd after the API server answered; on a loaded machine (four clusters on two
/// cores) it showed later than the reply.
const LOG_LAG: Duration = Duration::from_secs(5);

/// The API server's "Unable to authenticate" line logged after `mark`, waiting for it up to
/// [`LOG_LAG`]; None if it never shows.
async fn auth_line_after(
    cluster: &impl ClusterBackend,
    mark: &crate::cluster::LogMark,
) -> Option<String> {
    crate::wait::until(
        LOG_LAG,
        Duration::from_millis(100),
        || async { Ok(find_auth_line(&cluster.log_lines_since(mark).await)) },
        |_| anyhow::anyhow!("no line"),
    )
    .await
    .ok()
}

/// A request with the token and, for a 401, the cause the API server logged.
pub struct Observed401 {
    pub run: KubectlRun,
    pub cause: Option<Cause>,
    /// The `err="…"` text (plus the discovery error for an authenticator that never
    /// initialised), for the report.
    pub err: Option<String>,
}

/// `kubectl auth whoami` with the token, then the API server's reason if it said 401.
pub async fn observe_401(
    cluster: &impl ClusterBackend,
    kubeconfig_path: &kubectl::Kubeconfig,
) -> Result<Observed401> {
    let mark = cluster.log_mark().await;
    let run = kubectl::whoami(cluster.kubectl(), kubeconfig_path).await?;
    let line = match run.verdict {
        Verdict::Unauthorized => auth_line_after(cluster, &mark).await,
        _ => find_auth_line(&cluster.log_lines_since(&mark).await),
    };
    let mut err = line.as_deref().and_then(auth_error_of);
    let mut cause = err.as_deref().and_then(classify);
    if cause == Some(Cause::AuthenticatorNotInitialized)
        && let Some((c, text)) = last_init_failure(cluster).await
    {
        // The authenticator never initialised: its discovery error says why.
        cause = Some(c);
        err = Some(format!("{} (discovery: {text})", err.unwrap_or_default()));
    }
    Ok(Observed401 { run, cause, err })
}
