//! Assertions: run real kubectl as each person, classify, and explain 401s.

pub mod cause;
pub mod expect;
pub mod kubectl;

/// The result of one expectation check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub scenario: String,
    pub person: String,
    /// What was checked, e.g. `whoami`, `allowed: list pods -A`.
    pub check: String,
    pub passed: bool,
    /// What happened, in one line.
    pub actual: String,
    /// Why, when it failed (what was expected, what to look at).
    pub detail: Option<String>,
    /// The API server's own log line for a 401.
    pub apiserver_line: Option<String>,
    pub seconds: f64,
}
