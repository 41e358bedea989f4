//! A real kanidmd as a local process: config, start, readiness, admin recovery, stop.

use super::config::{KanidmServerConfig, render};
use crate::pki::LabPki;
use crate::process::{ManagedProcess, tail};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kanidm_client crate version we link.
pub const CLIENT_VERSION: &str = "1.10.4";

/// Kanidm server release lines this client is tested against (the whole suite passes on
/// each): its own, 1.10, and the next, 1.11. kanidm_client's debug-build exit on a version
/// mismatch is compiled out (`debug-assertions = false` for that crate in Cargo.toml).
pub const SUPPORTED_SERVER_LINES: [(u32, u32); 2] = [(1, 10), (1, 11)];

/// Where and how a Kanidm server is reached.
#[derive(Debug, Clone)]
pub struct KanidmEndpoint {
    pub domain: String,
    pub origin: String,
    pub ca_file: PathBuf,
}

impl KanidmEndpoint {
    pub fn issuer(&self, client: &str) -> String {
        crate::scenario::placeholder::issuer_url(&self.origin, client)
    }
    /// The client's JWKS (what discovery's `jwks_uri` names on Kanidm).
    pub fn jwks_url(&self, client: &str) -> String {
        format!("{}/public_key.jwk", self.issuer(client))
    }
}

#[derive(Debug)]
pub struct LocalKanidm {
    pub endpoint: KanidmEndpoint,
    pub config_path: PathBuf,
    pub log: PathBuf,
    binary: PathBuf,
    process: ManagedProcess,
    pub version: Option<String>,
    /// The loopback port it serves on.
    pub port: u16,
}

/// A reqwest client that trusts only the lab CA.
pub fn lab_http_client(ca_pem: &str) -> Result<reqwest::Client> {
    let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("parsing the lab CA")?;
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTPS client for the lab")
}

impl LocalKanidm {
    /// Start kanidmd with a fresh database under `dir` on a port from `ports` (usually
    /// [`free_port`]; asked again when another process took the port first), and wait until
    /// `/status` is true.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        pki: &LabPki,
        http: &reqwest::Client,
        mut ports: impl FnMut() -> Result<u16>,
    ) -> Result<LocalKanidm> {
        let binary = binary.to_path_buf();
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&run_dir)?;
        // A `developer`-profile kanidmd looks for its web UI at ../core/static relative to
        // its working directory; KANIDM_UI_DIR points at that folder (server/core/static).
        if let Some(ui) = std::env::var_os("KANIDM_UI_DIR").filter(|v| !v.is_empty()) {
            let core = dir.join("core");
            std::fs::create_dir_all(&core)?;
            let link = core.join("static");
            if !link.exists() {
                std::os::unix::fs::symlink(&ui, &link).context("linking the Kanidm UI folder")?;
            }
        }
        let log = dir.join("kanidmd.log");
        let config_path = dir.join("server.toml");
        // A port we picked is bound later by kanidmd, so another process (a concurrent lab)
        // can take it in between: kanidmd then exits with "Address already in use". Pick
        // another and start again, on a new database (the lost attempt may have made one).
        let mut attempt = 1;
        let (origin, process, port) = loop {
            let port = ports()?;
            let origin = format!("https://localhost:{port}");
            let bind = format!("127.0.0.1:{port}");
            let cfg = KanidmServerConfig {
                bind_address: &bind,
                domain: "localhost",
                origin: &origin,
                db_path: &dir.join("kanidm.db"),
                tls_chain: &pki.kanidm_chain,
                tls_key: &pki.kanidm_key,
                admin_socket: &dir.join("admin.sock"),
            };
            std::fs::write(&config_path, render(&cfg))?;
            match spawn_ready(&binary, &config_path, &run_dir, &log, &origin, http).await {
                Ok(process) => break (origin, process, port),
                Err(e) if port_was_taken(&log) && attempt < PORT_ATTEMPTS => {
                    tracing::warn!(
                        "kanidmd lost port {port} to another process: {e:#}; trying a new port"
                    );
                    let _ =
                        std::fs::rename(&log, dir.join(format!("kanidmd.port-lost-{attempt}.log")));
                    remove_database(dir);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let endpoint = KanidmEndpoint {
            domain: "localhost".into(),
            origin,
            ca_file: pki.ca_cert.clone(),
        };
        let version = server_version(http, &endpoint.origin).await;
        Ok(LocalKanidm {
            endpoint,
            config_path,
            log,
            binary,
            process,
            version,
            port,
        })
    }

    /// `kanidmd scripting recover-account <name>`: a fresh password for an admin account.
    pub async fn recover_account(&self, name: &str) -> Result<String> {
        let mut last = String::new();
        // The admin socket is bound after the HTTPS listener: retry briefly.
        for _ in 0..100 {
            let mut cmd = tokio::process::Command::new(&self.binary);
            crate::process::die_with_parent(cmd.as_std_mut());
            let run = cmd
                .args(["scripting", "recover-account", name, "-c"])
                .arg(&self.config_path)
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(Duration::from_secs(30), run)
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "kanidmd scripting recover-account {name} did not finish within 30 s"
                    )
                })?
                .context("running kanidmd scripting recover-account")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            for line in stdout.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if v["status"] == "ok"
                        && let Some(pw) = v["output"].as_str()
                    {
                        return Ok(pw.to_string());
                    }
                    last = format!("{} {}", v["reason"], v["message"]);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("kanidmd scripting recover-account {name} kept failing: {last}")
    }

    pub async fn stop(&mut self) {
        self.process.stop(Duration::from_secs(5)).await;
    }

    /// Start the stopped server again: same config, origin and database.
    pub async fn restart(&mut self, http: &reqwest::Client) -> Result<()> {
        self.process.stop(Duration::from_secs(5)).await;
        let run_dir = self
            .config_path
            .parent()
            .map(|d| d.join("run"))
            .unwrap_or_else(|| PathBuf::from("."));
        // Append to the same log: the artifacts show the whole story.
        let log = self.log.with_extension("restarted.log");
        self.process = spawn_ready(
            &self.binary,
            &self.config_path,
            &run_dir,
            &log,
            &self.endpoint.origin,
            http,
        )
        .await?;
        Ok(())
    }

    /// The kanidmd process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

/// Starts on a port another process took first (see [`LocalKanidm::start`]).
const PORT_ATTEMPTS: usize = 3;

/// Whether kanidmd's log says its listener's port was taken.
fn port_was_taken(log: &Path) -> bool {
    std::fs::read_to_string(log)
        .is_ok_and(|t| t.contains("Address already in use") || t.contains("AddrInUse"))
}

/// The database files of a lost start (`kanidm.db`, its journal and lock files).
fn remove_database(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("kanidm.db") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// kanidmd running `config` until `/status` says true (15 s at most).
async fn spawn_ready(
    binary: &Path,
    config_path: &Path,
    run_dir: &Path,
    log: &Path,
    origin: &str,
    http: &reqwest::Client,
) -> Result<ManagedProcess> {
    let args = vec![
        "server".to_string(),
        "-c".into(),
        config_path.to_string_lossy().into_owned(),
    ];
    let mut process = ManagedProcess::spawn("kanidmd", binary, &args, Some(run_dir), &[], log)?;
    let status_url = format!("{origin}/status");
    let (url, proc) = (&status_url, &mut process);
    crate::wait::until(
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            let alive = proc.ensure_running().map_err(|e| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                match text.contains("UI package path") || text.contains("integrity hash") {
                    true => anyhow::anyhow!(
                        "{e}\n  help: this kanidmd was built with the `developer` profile and cannot find its web UI; \
                         set KANIDM_UI_DIR to the `server/core/static` folder of the same kanidm checkout"
                    ),
                    false => e,
                }
            });
            async move {
                alive?;
                // Short: whatever else holds the port may accept and never answer.
                let up = match http.get(url).timeout(Duration::from_secs(2)).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.text().await.is_ok_and(|t| t.trim() == "true")
                    }
                    _ => false,
                };
                Ok(up.then_some(()))
            }
        },
        |after| {
            anyhow::anyhow!(
                "kanidmd did not answer {url} within {} s; log tail:\n{}",
                after.as_secs(),
                tail(log, 15)
            )
        },
    )
    .await?;
    Ok(process)
}

/// The server's version from the `X-KANIDM-VERSION` header of an API response.
pub async fn server_version(http: &reqwest::Client, origin: &str) -> Option<String> {
    let r = http
        .get(format!("{origin}/v1/auth/valid"))
        .send()
        .await
        .ok()?;
    r.headers()
        .get("x-kanidm-version")?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// `(major, minor)` of a Kanidm version string (`1.11.1`, `1.12.0-dev`).
pub fn release_line(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether this harness can drive a server of `found` version: release lines in
/// [`SUPPORTED_SERVER_LINES`] are tested; others are refused unless `KANIDM_DEV_YOLO` is set.
pub fn check_version(found: Option<&str>) -> Result<()> {
    let yolo = std::env::var_os("KANIDM_DEV_YOLO").is_some();
    check_version_rule(found, yolo)
}

fn check_version_rule(found: Option<&str>, yolo: bool) -> Result<()> {
    let Some(v) = found else {
        bail!(
            "kanidmd did not report its version (no X-KANIDM-VERSION header); is this really kanidmd?"
        )
    };
    match release_line(v) {
        Some(line) if SUPPORTED_SERVER_LINES.contains(&line) => Ok(()),
        _ if yolo => Ok(()),
        _ => {
            let lines: Vec<String> = SUPPORTED_SERVER_LINES
                .iter()
                .map(|(a, b)| format!("{a}.{b}.x"))
                .collect();
            bail!(
                "kanidmd is version {v}; this harness (kanidm_client {CLIENT_VERSION}) is tested against Kanidm {}\n  help: use one of those, or set KANIDM_DEV_YOLO=1 to try an untested release anyway",
                lines.join(" and ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kanidm_1_10_and_1_11_are_accepted_other_lines_only_when_asked() {
        for v in ["1.10.4", "1.10.0", "1.11.1", "1.11.2-dev"] {
            assert!(check_version_rule(Some(v), false).is_ok(), "{v}");
        }
        for v in ["1.9.2", "1.12.0", "2.0.0", "nonsense"] {
            let e = check_version_rule(Some(v), false).unwrap_err().to_string();
            assert!(e.contains("1.10.x and 1.11.x"), "{e}");
            assert!(check_version_rule(Some(v), true).is_ok(), "{v}");
        }
        assert!(check_version_rule(None, true).is_err());
        assert_eq!(release_line("1.11.1"), Some((1, 11)));
    }
}
