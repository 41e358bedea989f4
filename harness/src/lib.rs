//! kanidm-k8s-lab: an end-to-end harness for Kubernetes OIDC authentication with Kanidm.
//!
//! The data flow, one module per step: [`scenario`] → [`pki`] → [`kanidm`] → [`cluster`] →
//! [`login`] → [`check`] → [`report`]. [`render`] holds the pure renderers; [`run`] ties the
//! steps together. See ARCHITECTURE.md.

pub mod bench;
pub mod check;
pub mod cleanup;
pub mod cluster;
pub mod conformance;
pub mod doctor;
pub mod explain;
pub mod image_ref;
pub mod import;
pub mod input_file;
pub mod kanidm;
pub mod labkit;
pub mod login;
pub mod pki;
pub mod process;
pub mod progress;
pub mod rbac_apply;
pub mod render;
pub mod report;
pub mod run;
pub mod scenario;
pub mod setup;
#[doc(hidden)]
pub mod testsupport;
pub mod timings;
pub mod tools;
pub mod verify;
pub mod wait;

/// Install the one rustls crypto provider (aws-lc-rs) this workspace uses. Idempotent.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
