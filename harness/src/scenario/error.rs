//! Scenario errors that say what is wrong, where (file:line:column), and what to do.

use serde_saphyr::Location;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    /// The field the problem is in, as a dotted path (`kanidm.persons[0].groups`).
    pub field: String,
    pub message: String,
    pub help: Option<String>,
}

impl ScenarioError {
    pub fn at(
        file: &Path,
        loc: Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            field: field.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// All problems found in one file (loading reports every cross-reference error at once).
#[derive(Debug, Clone)]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

/// "did you mean" for a name among candidates, when one is close.
/// Names in a scenario are short (Kanidm's are at most 64): the edit distance is quadratic,
/// so longer strings (hostile files) get no suggestion instead of a hang.
const MAX_HINT_LEN: usize = 128;

/// A user's value inside a message: control characters escaped, at most 80 characters.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    if name.len() > MAX_HINT_LEN {
        return None;
    }
    candidates
        .into_iter()
        .take(1000)
        .filter(|c| c.len() <= MAX_HINT_LEN)
        .filter(|c| {
            strsim::damerau_levenshtein(name, c) <= (name.len() / 3).max(1)
                || strsim::jaro_winkler(name, c) > 0.85
        })
        .min_by_key(|c| strsim::damerau_levenshtein(name, c))
        .map(|c| format!("did you mean `{c}`?"))
}
