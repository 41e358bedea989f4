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
/// Never keys, tokens, kubeconfigs, databases, the browser's profiles and home, kubectl's
/// cache or symlinked UI assets.
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
                "pki" | "profiles" | "home" | "kubectl-cache" | "etcd" | "core" | "tokens" | "data"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_logs_and_configs_never_secrets_or_caches() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let f = |rel: &str| {
            let p = from.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        };
        for rel in [
            "cluster/kube-apiserver-1.log",
            "scenarios/post1/authentication-config.yaml",
            "scenarios/post1/alice.kubeconfig",
            "pki/ca.key",
            "browser/chromedriver.log",
            "browser/profiles/alice-0/Default/Cookies",
            "browser/home/.config/chromium/Crash Reports/settings.dat",
            "kubectl-cache/discovery/127.0.0.1_4443/servergroups.json",
            "kanidm-1/kanidm.db",
            "lab.json",
        ] {
            f(rel);
        }
        copy_artifacts(from.path(), to.path());
        let mut got = Vec::new();
        let mut stack = vec![to.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                match e.file_type().unwrap().is_dir() {
                    true => stack.push(e.path()),
                    false => got.push(
                        e.path()
                            .strip_prefix(to.path())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    ),
                }
            }
        }
        got.sort();
        assert_eq!(
            got,
            [
                "browser/chromedriver.log",
                "cluster/kube-apiserver-1.log",
                "scenarios/post1/authentication-config.yaml",
            ]
        );
    }
}
