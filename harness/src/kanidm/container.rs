//! Kanidm as a container (testcontainers, `kanidm/server` image).
//!
//! Topology, either way one issuer URL `https://localhost:<port>` for the browser, our
//! clients and kube-apiserver, so `Domain=localhost` cookies work:
//! - kind: the container joins the kind node's network namespace
//!   (`network_mode = container:<node>`) and listens on 0.0.0.0:<port>; the kind config maps
//!   host 127.0.0.1:<port> to the node's <port>.
//! - local backend: the container shares the host's network namespace and listens on
//!   127.0.0.1:<port> only, exactly like a local kanidmd (a published port would also listen
//!   on the container's bridge address).
//!
//! The container runs as the harness's own user, so everything it writes in the lab
//! directory can be removed by us.

use super::config::{KanidmServerConfig, render};
use super::server::{KanidmEndpoint, server_version};
use crate::pki::LabPki;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testcontainers::core::{ExecCommand, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// Label on everything this harness starts, for `cargo xtask clean`.
pub const LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "kanidm-k8s-lab");
/// Label with the pid of the harness process that started the container.
pub const PID_LABEL: &str = "kanidm-k8s-lab/pid";

pub struct ContainerKanidm {
    pub endpoint: KanidmEndpoint,
    pub log: PathBuf,
    pub version: Option<String>,
    container: Option<ContainerAsync<GenericImage>>,
}

/// Whose network namespace the Kanidm container lives in.
#[derive(Debug, Clone)]
pub enum ContainerNet {
    /// The kind node's (`container:<node>`), listening on 0.0.0.0:`port` inside it.
    Node { node: String, port: u16 },
    /// The host's, listening on 127.0.0.1:`port` (local backend).
    HostLoopback { port: u16 },
}

impl ContainerNet {
    fn docker_network(&self) -> String {
        match self {
            Self::Node { node, .. } => format!("container:{node}"),
            Self::HostLoopback { .. } => "host".into(),
        }
    }
    fn bind(&self) -> String {
        match self {
            Self::Node { port, .. } => format!("0.0.0.0:{port}"),
            Self::HostLoopback { port } => format!("127.0.0.1:{port}"),
        }
    }
    fn port(&self) -> u16 {
        match self {
            Self::Node { port, .. } | Self::HostLoopback { port } => *port,
        }
    }
}

impl ContainerKanidm {
    /// Start `image` (a `kanidm/server` image) in the network namespace `net` names.
    pub async fn start(
        dir: &Path,
        pki: &LabPki,
        http: &reqwest::Client,
        net: &ContainerNet,
        image: &str,
    ) -> Result<ContainerKanidm> {
        let (name, tag) = split_image(image)?;
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        std::fs::copy(&pki.kanidm_chain, data.join("chain.pem"))?;
        std::fs::copy(&pki.kanidm_key, data.join("key.pem"))?;
        let origin = format!("https://localhost:{}", net.port());
        let bind = net.bind();
        let cfg = KanidmServerConfig {
            bind_address: &bind,
            domain: "localhost",
            origin: &origin,
            db_path: Path::new("/data/kanidm.db"),
            tls_chain: Path::new("/data/chain.pem"),
            tls_key: Path::new("/data/key.pem"),
            admin_socket: Path::new("/data/kanidmd.sock"),
        };
        std::fs::write(data.join("server.toml"), render(&cfg))?;
        let container = GenericImage::new(name, tag)
            .with_mount(Mount::bind_mount(data.to_string_lossy().into_owned(), "/data"))
            // The network mode is set on the HostConfig directly, not through
            // `with_network`: testcontainers would register a `Network` whose drop blocks the
            // thread on a lock its `start` holds across awaits — with two cells' containers
            // starting and stopping on one task (cells side by side), a deadlock (seen).
            .with_host_config_modifier({
                let mode = net.docker_network();
                move |hc| {
                    hc.network_mode = Some(mode.clone());
                    // Docker refuses published ports with `container:` networking.
                    hc.publish_all_ports = Some(false);
                    hc.port_bindings = None;
                }
            })
            .with_user(format!("{}:{}", own_uid(), own_gid()))
            .with_label(LABEL.0, LABEL.1)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_cmd(["/sbin/kanidmd", "server", "-c", "/data/server.toml"])
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .await
            .map_err(|e| anyhow!("starting the {image} container: {e}\n  help: is Docker running (`docker info`), and is the image there (`docker image inspect {image}`)?"))?;
        let log = dir.join("kanidmd.log");
        let mut me = ContainerKanidm {
            endpoint: KanidmEndpoint {
                domain: "localhost".into(),
                origin: origin.clone(),
                ca_file: pki.ca_cert.clone(),
            },
            log,
            version: None,
            container: Some(container),
        };
        let ready = me.answering(http, "").await;
        if let Err(e) = ready {
            me.save_log().await;
            let tail = crate::process::tail(&me.log, 5);
            bail!("{e}; its log is in {}:\n{tail}", me.log.display());
        }
        me.version = server_version(http, &origin).await;
        Ok(me)
    }

    pub async fn recover_account(&self, name: &str) -> Result<String> {
        let c = self
            .container
            .as_ref()
            .ok_or_else(|| anyhow!("container already stopped"))?;
        for _ in 0..100 {
            let mut res = c
                .exec(ExecCommand::new([
                    "/sbin/kanidmd",
                    "scripting",
                    "recover-account",
                    name,
                    "-c",
                    "/data/server.toml",
                ]))
                .await
                .context("docker exec kanidmd scripting recover-account")?;
            let out = String::from_utf8_lossy(&res.stdout_to_vec().await.unwrap_or_default())
                .into_owned();
            for line in out.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && v["status"] == "ok"
                    && let Some(pw) = v["output"].as_str()
                {
                    return Ok(pw.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("kanidmd scripting recover-account {name} kept failing in the container")
    }

    async fn save_log(&self) {
        if let Some(c) = &self.container {
            let mut text = c.stdout_to_vec().await.unwrap_or_default();
            text.extend(c.stderr_to_vec().await.unwrap_or_default());
            let _ = std::fs::write(&self.log, text);
        }
    }

    /// Stop the container, keeping it (and its data) for [`ContainerKanidm::resume`].
    pub async fn pause(&mut self) -> Result<()> {
        let c = self
            .container
            .as_ref()
            .ok_or_else(|| anyhow!("container already removed"))?;
        c.stop_with_timeout(Some(5))
            .await
            .map_err(|e| anyhow!("stopping the Kanidm container: {e}"))
    }

    /// Start the stopped container again and wait for `/status`.
    pub async fn resume(&mut self, http: &reqwest::Client) -> Result<()> {
        let c = self
            .container
            .as_ref()
            .ok_or_else(|| anyhow!("container already removed"))?;
        c.start()
            .await
            .map_err(|e| anyhow!("starting the Kanidm container again: {e}"))?;
        self.answering(http, " of its restart").await
    }

    /// Wait until `/status` answers; fail at once when the container has exited (a kanidmd
    /// that cannot bind its port, say, exits within a second). `when` ends the timeout
    /// message.
    async fn answering(&self, http: &reqwest::Client, when: &str) -> Result<()> {
        let status = format!("{}/status", self.endpoint.origin);
        crate::wait::until(
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                let up = http
                    .get(&status)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if up {
                    return Ok(Some(()));
                }
                if let Some(c) = &self.container
                    && let Ok(false) = c.is_running().await
                {
                    bail!("the Kanidm container exited before it answered {status}");
                }
                Ok(None)
            },
            |after| {
                anyhow!(
                    "the Kanidm container did not answer {status} within {} s{when}",
                    after.as_secs()
                )
            },
        )
        .await
    }

    pub async fn stop(&mut self) {
        self.save_log().await;
        if let Some(c) = self.container.take() {
            let _ = c.rm().await;
        }
    }
}

fn own_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}
fn own_gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

/// `[registry[:port]/]name[:tag]` → (name, tag); testcontainers takes them apart.
pub fn split_image(image: &str) -> Result<(&str, &str)> {
    if image.contains('@') {
        bail!(
            "the Kanidm image `{image}` is pinned by digest; give it by tag (testcontainers runs name:tag)"
        );
    }
    if !crate::image_ref::valid_image_ref(image) {
        bail!("`{image}` is not an image reference; write it like kanidm/server:1.10.4");
    }
    Ok(match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_name_and_tag() {
        assert_eq!(
            split_image("kanidm/server:1.10.4").unwrap(),
            ("kanidm/server", "1.10.4")
        );
        assert_eq!(
            split_image("registry:5000/kanidm/server").unwrap(),
            ("registry:5000/kanidm/server", "latest")
        );
        assert_eq!(
            split_image("registry:5000/k/server:v1").unwrap(),
            ("registry:5000/k/server", "v1")
        );
        assert!(split_image("kanidm/server@sha256:abcd").is_err());
        assert!(split_image("kanidm server").is_err());
    }
}
