//! Pure judges: one expectation and what was observed → a judgement with a message.
//!
//! No I/O here: `check::expect` and the run observe (kubectl, the API server's log), the
//! judges decide. Each message says what was expected and what happened instead.

use super::kubectl::{KubectlRun, Verdict};
use crate::login::flow::LoginOutcomeActual;
use crate::scenario::cause::Cause;
use crate::scenario::model::{LoginOutcome, RefreshExpect, WhoamiExpect};
use crate::scenario::placeholder::{self, Values};

/// The verdict on one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub passed: bool,
    /// What happened, in one line.
    pub actual: String,
    /// Why it failed: what was expected, what to look at.
    pub detail: Option<String>,
}

impl Judgement {
    pub(crate) fn pass(actual: impl Into<String>) -> Self {
        Judgement {
            passed: true,
            actual: actual.into(),
            detail: None,
        }
    }
    pub(crate) fn fail(actual: impl Into<String>, detail: String) -> Self {
        Judgement {
            passed: false,
            actual: actual.into(),
            detail: Some(detail),
        }
    }
}

/// The login step: a token when `ok` was expected, Kanidm's Access Denied page when that was.
pub fn login(want: LoginOutcome, got: &LoginOutcomeActual) -> Judgement {
    match (got, want) {
        (LoginOutcomeActual::Token(_), LoginOutcome::Ok) => Judgement::pass(got.label()),
        (LoginOutcomeActual::AccessDenied, LoginOutcome::AccessDenied) => {
            Judgement::pass("Kanidm showed Access Denied")
        }
        (LoginOutcomeActual::LoginFailed(_), LoginOutcome::Refused) => Judgement::pass(got.label()),
        (got, want) => Judgement::fail(got.label(), format!("expected login {want:?}")),
    }
}

/// How a kubelogin refresh went, from its runs' outcomes: `silent` wants every run to give a
/// token without the browser; `browser` wants the refresh refused and kubelogin back at
/// Kanidm's pages (whatever they then decide: a token, or Login Failed).
pub fn refresh(want: RefreshExpect, outs: &[LoginOutcomeActual]) -> Judgement {
    let n = outs.len();
    let used_browser = |o: &LoginOutcomeActual| match o {
        LoginOutcomeActual::Token(t) => t.kubelogin.as_ref().map(|k| k.browser),
        LoginOutcomeActual::AccessDenied | LoginOutcomeActual::LoginFailed(_) => Some(true),
        LoginOutcomeActual::Error(_) => None,
    };
    if let Some(e) = outs.iter().find(|o| used_browser(o).is_none()) {
        return Judgement::fail(
            e.label(),
            format!("expected a {want:?} refresh; kubelogin did not give a token"),
        );
    }
    let browsers = outs
        .iter()
        .filter(|o| used_browser(o) == Some(true))
        .count();
    let tokens = outs
        .iter()
        .filter(|o| matches!(o, LoginOutcomeActual::Token(_)))
        .count();
    let at_once = if n > 1 {
        format!(" ({n} at once on one cache)")
    } else {
        String::new()
    };
    let jtis: std::collections::BTreeSet<&str> = outs
        .iter()
        .filter_map(|o| match o {
            LoginOutcomeActual::Token(t) => t.claims["jti"].as_str(),
            _ => None,
        })
        .collect();
    match want {
        RefreshExpect::Silent if browsers == 0 && tokens == n => Judgement::pass(format!(
            "silent: {n} new id_token{} without the browser{at_once}, {} distinct session id{}",
            if n == 1 { "" } else { "s" },
            jtis.len(),
            if jtis.len() == 1 { "" } else { "s" }
        )),
        RefreshExpect::Silent => Judgement::fail(
            format!(
                "{browsers} of {n} refresh{} needed the browser{at_once}",
                if n == 1 { "" } else { "es" }
            ),
            "expected kubelogin to refresh with Kanidm's refresh token, without the browser".into(),
        ),
        RefreshExpect::Browser if browsers == n => Judgement::pass(format!(
            "refused: kubelogin fell back to the browser ({})",
            outs.first().map(|o| o.label()).unwrap_or_default()
        )),
        RefreshExpect::Browser => Judgement::fail(
            format!(
                "silent: {tokens} new id_token{} without the browser",
                if tokens == 1 { "" } else { "s" }
            ),
            "expected Kanidm to refuse the refresh token, sending kubelogin back to the browser"
                .into(),
        ),
    }
}

/// A token kept from an earlier point: it must be one, and the report says when it expires
/// (what a step shows side by side with a fresh login).
pub fn kept_token(got: &LoginOutcomeActual, from: &str, now: u64) -> Judgement {
    match got {
        LoginOutcomeActual::Token(t) => {
            let left = t.expires_at.saturating_sub(now);
            let hms = |s: u64| format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60);
            Judgement::pass(format!(
                "token ({}) from {from}, valid until {} UTC (in {} min {} s)",
                t.alg,
                hms(t.expires_at),
                left / 60,
                left % 60
            ))
        }
        other => Judgement::fail(
            other.label(),
            format!("the login at `{from}` gave no token, so there is none to check again"),
        ),
    }
}

/// A step checks a kept token that the person never got at that point.
pub fn no_kept_token(person: &str, from: &str) -> Judgement {
    Judgement::fail(
        format!("{person} has no token from {from}"),
        format!(
            "{person} did not log in at `{from}` (no expectation there, or the login failed); point `tokenFrom` at a step where they got a token"
        ),
    )
}

/// An `unauthorized` expectation holds only for a 401 with exactly the expected cause
/// (read from the API server's own log line).
pub fn unauthorized(want: Cause, verdict: &Verdict, cause: Option<Cause>) -> Judgement {
    let actual = match (verdict, cause) {
        (Verdict::Unauthorized, Some(c)) => format!("Unauthorized (401), cause {c}"),
        (Verdict::Unauthorized, None) => {
            "Unauthorized (401), cause not found in the API server log".into()
        }
        (other, _) => other.label().to_string(),
    };
    if *verdict == Verdict::Unauthorized && cause == Some(want) {
        return Judgement::pass(actual);
    }
    let detail = match cause {
        Some(c) if *verdict == Verdict::Unauthorized => format!(
            "expected Unauthorized with cause {want}, but the API server rejected the token for {c}: {}",
            c.hint()
        ),
        _ => format!("expected Unauthorized with cause {want} ({})", want.hint()),
    };
    Judgement::fail(actual, detail)
}

/// An `allowed` (or `forbidden`) action: allowed means the API server did it (or would, for a
/// dry run); forbidden means 403 — a 401 never counts as forbidden.
pub fn access(want_allowed: bool, run: &KubectlRun) -> Judgement {
    let want = if want_allowed {
        Verdict::Allowed
    } else {
        Verdict::Forbidden
    };
    let actual = run.verdict.label().to_string();
    if run.verdict == want {
        return Judgement::pass(actual);
    }
    let said = run
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or(run.stdout.trim());
    Judgement::fail(
        actual,
        format!(
            "expected {} for `{}`; kubectl said: {said}",
            want.label(),
            run.command
        ),
    )
}

/// Whether an allowed/forbidden answer may still change (RBAC reaching the authorizer's
/// cache): only a definite allow/deny that differs from the wanted one is worth a retry.
pub fn worth_retrying(want_allowed: bool, run: &KubectlRun) -> bool {
    let want = if want_allowed {
        Verdict::Allowed
    } else {
        Verdict::Forbidden
    };
    run.verdict != want && matches!(run.verdict, Verdict::Allowed | Verdict::Forbidden)
}

/// `kubectl auth whoami -o json` against the expected username and groups (placeholders
/// resolved against the lab's values).
pub fn whoami(run: &KubectlRun, w: &WhoamiExpect, values: &Values) -> Judgement {
    if run.verdict != Verdict::Allowed {
        return Judgement::fail(
            run.verdict.label(),
            format!("`kubectl auth whoami` failed: {}", run.stderr.trim()),
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
        Judgement::pass(actual)
    } else {
        Judgement::fail(actual, problems.join("; "))
    }
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && s.matches('-').count() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(verdict: Verdict, stdout: &str, stderr: &str) -> KubectlRun {
        KubectlRun {
            command: "kubectl delete namespace x --dry-run=server".into(),
            verdict,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn login_passes_only_on_the_expected_outcome() {
        let denied = LoginOutcomeActual::AccessDenied;
        assert!(login(LoginOutcome::AccessDenied, &denied).passed);
        let j = login(LoginOutcome::Ok, &denied);
        assert!(!j.passed);
        assert_eq!(j.actual, "access denied");
        assert_eq!(j.detail.as_deref(), Some("expected login Ok"));
        let failed = LoginOutcomeActual::LoginFailed("bad password".into());
        assert!(!login(LoginOutcome::AccessDenied, &failed).passed);
    }

    #[test]
    fn unauthorized_needs_the_401_and_the_cause() {
        let ok = unauthorized(
            Cause::UnsupportedSigningAlg,
            &Verdict::Unauthorized,
            Some(Cause::UnsupportedSigningAlg),
        );
        assert!(ok.passed);
        assert_eq!(
            ok.actual,
            "Unauthorized (401), cause unsupported-signing-alg"
        );
        // The right status for the wrong reason fails, and says the real reason.
        let wrong = unauthorized(Cause::Audience, &Verdict::Unauthorized, Some(Cause::Issuer));
        assert!(!wrong.passed);
        let d = wrong.detail.unwrap();
        assert!(
            d.contains("expected Unauthorized with cause audience"),
            "{d}"
        );
        assert!(d.contains("rejected the token for issuer"), "{d}");
        // No cause in the log is not a pass either.
        assert!(!unauthorized(Cause::Issuer, &Verdict::Unauthorized, None).passed);
        // Accepted: fails with the hint for the expected cause.
        let accepted = unauthorized(Cause::Audience, &Verdict::Allowed, None);
        assert!(!accepted.passed);
        assert_eq!(accepted.actual, "allowed");
    }

    #[test]
    fn forbidden_means_403_never_401() {
        let r401 = run(Verdict::Unauthorized, "", "error: You must be logged in");
        assert!(!access(false, &r401).passed);
        assert!(!worth_retrying(false, &r401));
        let r403 = run(Verdict::Forbidden, "", "Error from server (Forbidden): no");
        assert!(access(false, &r403).passed);
        let j = access(true, &r403);
        assert!(!j.passed);
        assert!(
            j.detail
                .unwrap()
                .contains("expected allowed for `kubectl delete"),
            "names the command"
        );
        assert!(worth_retrying(true, &r403));
    }

    #[test]
    fn whoami_compares_user_and_groups_with_placeholders() {
        let out = r#"{"status":{"userInfo":{"username":"alice@localhost","groups":["k8s_users@localhost","0b5c1a5e-6a0f-4a57-9e8e-2c1f1c7b9d10","system:authenticated"]}}}"#;
        let r = run(Verdict::Allowed, out, "");
        let values = Values {
            domain: "localhost".into(),
            ..Default::default()
        };
        let mut w = WhoamiExpect {
            username: Some("alice@${domain}".into()),
            groups_include: vec!["k8s_users@${domain}".into()],
            groups_exclude: vec!["k8s_admins@${domain}".into()],
        };
        let j = whoami(&r, &w, &values);
        assert!(j.passed, "{j:?}");
        assert_eq!(
            j.actual,
            "user alice@localhost, groups [k8s_users@localhost, system:authenticated] (+1 UUIDs)"
        );
        w.groups_exclude = vec!["system:authenticated".into()];
        let j = whoami(&r, &w, &values);
        assert_eq!(
            j.detail.as_deref(),
            Some("group `system:authenticated` present but must not be")
        );
    }
}
