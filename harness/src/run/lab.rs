//! One lab's fixed parts: its 0700 working directory, PKI, HTTP client and the shared
//! browser — and which files of it may become artifacts.

use crate::kanidm::server::lab_http_client;
use crate::login::browser::Browser;
use crate::pki::{self, LabPki};
use anyhow::Result;
use std::path::{Path, PathBuf};

pub struct Lab {
    pub dir: PathBuf,
    pub pki: LabPki,
    pub http: reqwest::Client,
    pub browser: Browser,
}

impl Lab {
    pub async fn new(dir: &Path) -> Result<Lab> {
        std::fs::create_dir_all(dir)?;
        let pki = pki::generate_local(&dir.join("pki"))?;
        let http = lab_http_client(&pki.ca_pem)?;
        let browser = Browser::start(&dir.join("browser")).await?;
        Ok(Lab {
            dir: dir.to_path_buf(),
            pki,
            http,
            browser,
        })
    }

    /// A fresh numbered directory for a Kanidm server of this lab.
    pub fn next_kanidm_dir(&self) -> PathBuf {
        let n = (1..)
            .find(|n| !self.dir.join(format!("kanidm-{n}")).exists())
            .unwrap_or(1);
        self.dir.join(format!("kanidm-{n}"))
    }
}

/// The lab's working directory (keys, tokens, databases): removed on drop unless kept.
pub struct LabDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl LabDir {
    pub fn create(keep: bool) -> Result<LabDir> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("kanidm-k8s-lab-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(LabDir { path, keep })
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Copy what a user needs to debug a run: logs, rendered configs, screenshots, page HTML.
/// Never keys, tokens, kubeconfigs, databases, the browser profiles or symlinked UI assets.
pub fn copy_artifacts(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let n = name.to_string_lossy();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            if matches!(
                n.as_ref(),
                "pki" | "profiles" | "etcd" | "core" | "tokens" | "data"
            ) {
                continue;
            }
            copy_artifacts(&p, &to.join(&name));
            continue;
        }
        let secret = n.ends_with(".kubeconfig")
            || n.contains("key")
            || n.contains(".db")
            || n.ends_with(".sock")
            || n == "lab.json";
        if !secret {
            let _ = std::fs::create_dir_all(to);
            let _ = std::fs::copy(&p, to.join(&name));
        }
    }
}
