//! Scenario files: schema, strict loading, placeholders and actions.

pub mod action;
pub mod error;
pub mod load;
pub mod model;
pub mod placeholder;

pub use error::{ScenarioError, ScenarioErrors};
pub use load::{LoadedScenario, load_file, load_str};

use std::path::{Path, PathBuf};

/// All `*.yaml` files in a directory, sorted by name.
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    out.sort();
    Ok(out)
}
