//! Assertions: observe (real kubectl as each person, the API server's log) and judge
//! (pure: expectation + observation → verdict with a message).

pub mod cause;
pub mod expect;
pub mod judge;
pub mod kubectl;

/// The result of one expectation check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The matrix cell it ran in: `Kubernetes 1.33 (v1.33.13), kanidmd 1.10.4`.
    pub cell: String,
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
