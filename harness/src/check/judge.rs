//! Pure judges: one expectation and what was observed → a judgement with a message.
//!
//! No I/O here: `check::expect` and the run observe (kubectl, the API server's log), the
//! judges decide. Each message says what was expected and what happened instead.

use super::kubectl::{KubectlRun, Verdict};
use crate::login::flow::LoginOutcomeActual;
use crate::scenario::cause::Cause;
use crate::scenario::model::{LoginOutcome, WhoamiExpect};
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
    fn pass(actual: impl Into<String>) -> Self {
        Judgement {
            passed: true,
            actual: actual.into(),
            detail: None,
        }
    }
    fn fail(actual: impl Into<String>, detail: String) -> Self {
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

/// `explain`'s verdict on a token against what the real API server did with it: both
/// accept (and map the same user: username, uid, groups, extra), or both reject with the
/// same cause. Any disagreement is a bug in `explain`.
pub fn explain_agrees(
    whoami: &KubectlRun,
    real_cause: Option<Cause>,
    explained: &crate::explain::checks::Verdict,
) -> Judgement {
    use crate::explain::checks::Verdict as E;
    let said = crate::explain::verdict_line(explained);
    match (&whoami.verdict, explained) {
        (Verdict::Unauthorized, E::Rejected { cause, .. }) if *cause == real_cause => {
            Judgement::pass(format!("both: {said}"))
        }
        (Verdict::Unauthorized, _) => Judgement::fail(
            format!("explain: {said}"),
            format!(
                "the API server said Unauthorized (401), cause {}; explain disagrees",
                real_cause.map_or("not found in its log".to_string(), |c| c.to_string())
            ),
        ),
        // A rotated-out key the API server still holds: explain says so instead of a verdict
        // it cannot see (the caveat), and the API server's acceptance is that case.
        (
            Verdict::Allowed,
            E::Rejected {
                cause: Some(Cause::Signature),
                caveat: Some(_),
                ..
            },
        ) => Judgement::pass(
            "the API server still holds the rotated-out key; explain: signature once it refetches",
        ),
        (Verdict::Allowed, E::Accepted { user, .. }) => {
            let v: serde_json::Value = serde_json::from_str(&whoami.stdout).unwrap_or_default();
            let info = &v["status"]["userInfo"];
            let strings = |x: &serde_json::Value| -> Vec<String> {
                let mut l: Vec<String> = x
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                l.sort();
                l
            };
            let mut problems = Vec::new();
            let username = info["username"].as_str().unwrap_or_default();
            if username != user.username {
                problems.push(format!(
                    "username: API server {username:?}, explain {:?}",
                    user.username
                ));
            }
            let uid = info["uid"].as_str().filter(|u| !u.is_empty());
            if uid != user.uid.as_deref().filter(|u| !u.is_empty()) {
                problems.push(format!("uid: API server {uid:?}, explain {:?}", user.uid));
            }
            let mut mine = user.groups.clone();
            mine.sort();
            let real = strings(&info["groups"]);
            if real != mine {
                problems.push(format!("groups: API server {real:?}, explain {mine:?}"));
            }
            let real_extra: std::collections::BTreeMap<String, Vec<String>> = info["extra"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
                .unwrap_or_default();
            let mut my_extra = user.extra.clone();
            my_extra.values_mut().for_each(|v| v.sort());
            if real_extra != my_extra {
                problems.push(format!(
                    "extra: API server {real_extra:?}, explain {my_extra:?}"
                ));
            }
            if problems.is_empty() {
                Judgement::pass(format!(
                    "both: accepted as {:?}, same uid, {} groups and {} extra key(s)",
                    user.username,
                    mine.len(),
                    my_extra.len()
                ))
            } else {
                Judgement::fail(
                    format!("explain: {said}"),
                    format!("explain maps another user: {}", problems.join("; ")),
                )
            }
        }
        (real, _) => Judgement::fail(
            format!("explain: {said}"),
            format!(
                "`kubectl auth whoami` with this token: {}; explain disagrees",
                real.label()
            ),
        ),
    }
}

/// The token a person's credentials present: a JWT (what an OIDC authenticator reads),
/// with its algorithm and expiry, like the e2e `login` line.
pub fn presented_token(
    jwt: &Result<crate::explain::token::Jwt, crate::explain::InputError>,
    from: &str,
) -> Judgement {
    match jwt {
        Ok(t) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let exp = t.claim_time("exp").unwrap_or(0);
            Judgement::pass(format!(
                "token ({}) {from}, expires {}",
                t.alg,
                crate::explain::checks::relative(exp - now)
            ))
        }
        Err(e) => Judgement::fail(
            format!("no JWT {from}"),
            format!("{e}; an OIDC authenticator only reads JWTs"),
        ),
    }
}

/// `verify` could not get a token out of a person's credentials.
pub fn credentials_unusable(why: &str) -> Judgement {
    Judgement::fail("credentials unusable", why.to_string())
}

/// `explain` could not use the input the API server runs with: always a bug in `explain`.
pub fn explain_refused(why: &str) -> Judgement {
    Judgement::fail("explain refused the input", format!("explain: {why}"))
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

#[cfg(test)]
mod explain_agreement {
    use super::*;
    use crate::explain::checks::{MappedUser, Verdict as E};
    use std::collections::BTreeMap;

    fn whoami(verdict: Verdict, stdout: &str) -> KubectlRun {
        KubectlRun {
            command: "kubectl auth whoami -o json".into(),
            verdict,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn accepted(groups: &[&str]) -> E {
        E::Accepted {
            user: MappedUser {
                username: "alice@localhost".into(),
                uid: None,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                extra: BTreeMap::from([(
                    "authentication.kubernetes.io/credential-id".to_string(),
                    vec!["JTI=j".to_string()],
                )]),
            },
            by: "jwt[0]".into(),
        }
    }

    const REAL: &str = r#"{"status":{"userInfo":{"username":"alice@localhost","groups":["system:authenticated","k8s_users@localhost"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=j"]}}}}"#;

    #[test]
    fn same_user_agrees_in_any_group_order() {
        let j = explain_agrees(
            &whoami(Verdict::Allowed, REAL),
            None,
            &accepted(&["k8s_users@localhost", "system:authenticated"]),
        );
        assert!(j.passed, "{j:?}");
    }

    #[test]
    fn another_user_or_verdict_or_cause_disagrees() {
        let other_groups = explain_agrees(
            &whoami(Verdict::Allowed, REAL),
            None,
            &accepted(&["k8s_admins@localhost", "system:authenticated"]),
        );
        assert!(!other_groups.passed);
        assert!(other_groups.detail.unwrap().contains("groups"));
        let rejected = |cause, caveat: Option<&str>| E::Rejected {
            err: "x".into(),
            cause,
            caveat: caveat.map(String::from),
        };
        let real_401 = whoami(Verdict::Unauthorized, "");
        assert!(
            explain_agrees(
                &real_401,
                Some(Cause::Audience),
                &rejected(Some(Cause::Audience), None)
            )
            .passed
        );
        assert!(
            !explain_agrees(
                &real_401,
                Some(Cause::Audience),
                &rejected(Some(Cause::Issuer), None)
            )
            .passed
        );
        assert!(!explain_agrees(&real_401, Some(Cause::Audience), &accepted(&[])).passed);
        assert!(
            !explain_agrees(
                &whoami(Verdict::Allowed, REAL),
                None,
                &rejected(Some(Cause::Audience), None)
            )
            .passed
        );
        assert!(!explain_agrees(&real_401, None, &E::Undetermined("cel".into())).passed);
        // Only a rotated-out key (the caveat) may be accepted by an API server that cached it.
        assert!(
            explain_agrees(
                &whoami(Verdict::Allowed, REAL),
                None,
                &rejected(Some(Cause::Signature), Some("cache"))
            )
            .passed
        );
        assert!(
            !explain_agrees(
                &whoami(Verdict::Allowed, REAL),
                None,
                &rejected(Some(Cause::Signature), None)
            )
            .passed
        );
    }
}
