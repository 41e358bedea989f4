//! Real Kanidm: server lifecycle (local process or container), the planner of its state,
//! and the execution, credentials and read-back of a plan.
//!
//! Data flow: `plan` (pure) → `reconcile` (executes through `admin`, enrols through
//! `credentials`) → `readback` (what the server holds, `verify` against the scenario).

pub mod admin;
pub mod cli_lines;
pub mod config;
pub mod container;
pub mod credentials;
pub mod events;
pub mod plan;
pub mod readback;
pub mod reconcile;
pub mod server;

pub use credentials::PersonSecrets;
pub use readback::Provisioned;
pub use server::{KanidmEndpoint, LocalKanidm};

use std::path::{Path, PathBuf};

/// Which Kanidm a run starts: one value of the Kanidm axis of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KanidmSource {
    /// A kanidmd binary, run as a local process (`--kanidmd`, `KANIDMD_BIN`, PATH).
    Binary(PathBuf),
    /// A `kanidm/server`-like image, run by Docker (`--kanidm-image`, `LAB_KANIDM_IMAGE`).
    Image(String),
}

impl std::fmt::Display for KanidmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Binary(p) => write!(f, "kanidmd {}", p.display()),
            Self::Image(i) => write!(f, "image {i}"),
        }
    }
}

/// A running Kanidm server, however it was started.
// A handful exist per run; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum KanidmServer {
    Local(LocalKanidm),
    Container(container::ContainerKanidm),
}

impl KanidmServer {
    pub fn endpoint(&self) -> &KanidmEndpoint {
        match self {
            Self::Local(k) => &k.endpoint,
            Self::Container(k) => &k.endpoint,
        }
    }
    /// The loopback port a replacement may take over (the next server keeps the origin,
    /// so an API server trusting this one's issuers can stay): local processes only, which
    /// pick another port when theirs is taken.
    pub fn port_to_reuse(&self) -> Option<u16> {
        match self {
            Self::Local(k) => Some(k.port),
            Self::Container(_) => None,
        }
    }
    pub fn version(&self) -> Option<&str> {
        match self {
            Self::Local(k) => k.version.as_deref(),
            Self::Container(k) => k.version.as_deref(),
        }
    }
    pub fn log(&self) -> &Path {
        match self {
            Self::Local(k) => &k.log,
            Self::Container(k) => &k.log,
        }
    }
    pub async fn recover_account(&self, name: &str) -> anyhow::Result<String> {
        match self {
            Self::Local(k) => k.recover_account(name).await,
            Self::Container(k) => k.recover_account(name).await,
        }
    }
    pub async fn stop(&mut self) {
        match self {
            Self::Local(k) => k.stop().await,
            Self::Container(k) => k.stop().await,
        }
    }
    /// Stop serving, keeping the data (a step's `stopKanidm`).
    pub async fn pause(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Local(k) => {
                k.stop().await;
                Ok(())
            }
            Self::Container(k) => k.pause().await,
        }
    }
    /// Serve again on the same origin with the same data (a step's `startKanidm`).
    pub async fn resume(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        match self {
            Self::Local(k) => k.restart(http).await,
            Self::Container(k) => k.resume(http).await,
        }
    }
}
