//! Real Kanidm: server lifecycle and provisioning from scenarios.

pub mod provision;
pub mod server;

pub use provision::{PersonSecrets, Provisioned};
pub use server::{KanidmEndpoint, LocalKanidm};
