//! What one authenticator's walk through a token produces: its steps (pass, fail, skipped,
//! unknown, with the value seen), its outcome, and the user it maps. Shared by the
//! verification (`checks.rs`) and the mappings (`mapping.rs`).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not checked (offline) or not applicable.
    Skip,
    /// Cannot be decided here.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub status: Status,
    pub seen: String,
}

/// The user the API server would see.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MappedUser {
    pub username: String,
    pub uid: Option<String>,
    /// Including `system:authenticated`, which the API server adds to every token user.
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// The token's `iss` is not this authenticator's: it declines without an error.
    Declined,
    /// The API server's error text for this authenticator.
    Error(String),
    Accepted(MappedUser),
    /// The answer depends on something this tool cannot evaluate.
    Undetermined(String),
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(super) fn go_list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

/// The steps of one authenticator, as they are walked.
pub(super) struct Run {
    pub(super) steps: Vec<Step>,
    pub(super) caveat: Option<String>,
}

impl Run {
    pub(super) fn new() -> Run {
        Run {
            steps: Vec::new(),
            caveat: None,
        }
    }

    pub(super) fn pass(&mut self, name: &'static str, seen: impl Into<String>) {
        self.push(name, Status::Pass, seen);
    }
    pub(super) fn skip(&mut self, name: &'static str, seen: impl Into<String>) {
        self.push(name, Status::Skip, seen);
    }
    pub(super) fn push(&mut self, name: &'static str, status: Status, seen: impl Into<String>) {
        self.steps.push(Step {
            name,
            status,
            seen: seen.into(),
        });
    }
    /// A failed check: the step, and the API server's error text as the outcome.
    pub(super) fn fail(
        &mut self,
        name: &'static str,
        seen: impl Into<String>,
        err: String,
    ) -> Outcome {
        self.push(name, Status::Fail, seen);
        Outcome::Error(err)
    }
    pub(super) fn unknown(&mut self, name: &'static str, why: String) -> Outcome {
        self.push(name, Status::Unknown, why.clone());
        Outcome::Undetermined(why)
    }
}
