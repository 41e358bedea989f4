//! Headless login through Kanidm's real web UI, returning verified id_tokens.

pub mod browser;
pub mod exec_block;
pub mod flow;
pub mod kubelogin;
pub mod oidc;
pub mod redirect_ports;
pub mod signins;
pub mod webauthn;

pub use flow::{LoginOutcomeActual, Person, login};
