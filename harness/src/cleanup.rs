//! `cargo xtask clean`: find and remove what interrupted runs left behind.

use crate::kanidm::container::{LABEL, PID_LABEL};
use std::path::Path;

async fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let run = tokio::process::Command::new(cmd)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Returns one line per thing removed (or that could not be checked).
pub async fn clean(lab_root: &Path) -> Vec<String> {
    let mut done = Vec::new();
    // Containers we labelled (Kanidm for the kind backend) whose harness process is gone.
    let filter = format!("label={}={}", LABEL.0, LABEL.1);
    let format = format!("{{{{.ID}}}} {{{{.Label \"{PID_LABEL}\"}}}}");
    match output(
        "docker",
        &["ps", "-a", "--filter", &filter, "--format", &format],
    )
    .await
    {
        Some(list) => {
            for line in list.lines() {
                let mut parts = line.split_whitespace();
                let Some(id) = parts.next() else { continue };
                let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
                if pid.is_some_and(crate::labkit::process_alive) {
                    continue;
                }
                if output("docker", &["rm", "-f", id]).await.is_some() {
                    done.push(format!("removed container {id}"));
                }
            }
        }
        None => done.push("docker not available: containers not checked".into()),
    }
    // kind clusters named by this harness whose owning process is gone.
    let kind = crate::tools::KIND
        .find()
        .map(|f| f.path.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kind".into());
    if let Some(list) = output(&kind, &["get", "clusters"]).await {
        for name in list.lines().filter(|n| n.starts_with("kanidm-lab-")) {
            // `kanidm-lab-<pid>` or, one per matrix cell, `kanidm-lab-<pid>-<n>`.
            let pid: Option<u32> = name
                .trim_start_matches("kanidm-lab-")
                .split('-')
                .next()
                .and_then(|p| p.parse().ok());
            if pid.is_some_and(crate::labkit::process_alive) {
                continue;
            }
            if output(&kind, &["delete", "cluster", "--name", name])
                .await
                .is_some()
            {
                done.push(format!("deleted kind cluster {name}"));
            }
        }
    }
    // Lab working directories (keys, tokens, databases) of processes that no longer exist.
    let tmp = std::env::temp_dir();
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("kanidm-k8s-lab-") else {
            continue;
        };
        let pid: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if pid.is_some_and(crate::labkit::process_alive) {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            done.push(format!("removed {}", e.path().display()));
        }
    }
    for sub in ["lab", "kanidm"] {
        let dir = lab_root.join(sub);
        if !dir.exists() {
            continue;
        }
        // A lab that is still starting has no state file yet, but its owner file.
        let alive = match crate::labkit::read_state(&dir) {
            Ok(state) => state.owner_running(),
            Err(_) => crate::labkit::owner_of(&dir).is_some_and(|o| o.owner_running()),
        };
        if alive {
            done.push(format!("kept {} (its lab is running)", dir.display()));
            continue;
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            done.push(format!("removed {}", dir.display()));
        }
    }
    done
}
