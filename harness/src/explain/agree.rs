//! The differential check of `explain`: its verdict on a token against what the real API
//! server did with the same token (`e2e --explain-check`). Pure; unit-tested.

use super::checks::Verdict as E;
use crate::check::judge::Judgement;
use crate::check::kubectl::{KubectlRun, Verdict};
use crate::scenario::cause::Cause;

/// `explain`'s verdict on a token against what the real API server did with it: both
/// accept (and map the same user: username, uid, groups, extra), or both reject with the
/// same cause. Any disagreement is a bug in `explain`.
pub fn explain_agrees(whoami: &KubectlRun, real_cause: Option<Cause>, explained: &E) -> Judgement {
    let said = super::verdict_line(explained);
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
        // The issuer is down now, but the API server initialised before: explain's verdict
        // for that state must agree, user included.
        (
            Verdict::Allowed,
            E::Rejected {
                if_initialised: Some(alt),
                ..
            },
        ) if matches!(**alt, E::Accepted { .. }) => {
            let inner = explain_agrees(whoami, real_cause, alt);
            if inner.passed {
                Judgement::pass(format!(
                    "the API server initialised before the issuer went down; explain, for that state: {}",
                    super::verdict_line(alt)
                ))
            } else {
                inner
            }
        }
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

/// `explain` could not use the input the API server runs with: always a bug in `explain`.
pub fn explain_refused(why: &str) -> Judgement {
    Judgement::fail("explain refused the input", format!("explain: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::checks::MappedUser;
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
            if_initialised: None,
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
        // Issuer down now: agreement only through the verdict for an API server that
        // initialised before, and only when that verdict maps the same user.
        let down = |alt: E| E::Rejected {
            err: "oidc: authenticator not initialized".into(),
            cause: Some(Cause::AuthenticatorNotInitialized),
            caveat: Some("the issuer cannot be reached now".into()),
            if_initialised: Some(Box::new(alt)),
        };
        assert!(
            explain_agrees(
                &whoami(Verdict::Allowed, REAL),
                None,
                &down(accepted(&["k8s_users@localhost", "system:authenticated"]))
            )
            .passed
        );
        assert!(
            !explain_agrees(
                &whoami(Verdict::Allowed, REAL),
                None,
                &down(accepted(&["k8s_admins@localhost", "system:authenticated"]))
            )
            .passed
        );
        assert!(
            !explain_agrees(
                &whoami(Verdict::Allowed, REAL),
                None,
                &down(rejected(Some(Cause::Audience), None))
            )
            .passed
        );
    }
}
