//! `cargo xtask doctor`: which real components are here, which are missing and how to get
//! them, and what each backend can run.

use std::path::{Path, PathBuf};

/// The components table; true when something the local backend needs is missing.
pub async fn components(minors: &[(u32, String, String)]) -> bool {
    let mut missing_local = false;
    println!("{:<24} {:<10} path", "component", "found via");
    let per_minor = [
        crate::tools::KUBE_APISERVER.name,
        crate::tools::KUBE_CONTROLLER_MANAGER.name,
    ];
    for t in crate::tools::ALL {
        if per_minor.contains(&t.name) {
            continue;
        }
        let optional = t.name == crate::tools::KIND.name || t.name == crate::tools::KUBELOGIN.name;
        match t.find() {
            Some(f) if t.name == crate::tools::KUBELOGIN.name => {
                let v = crate::login::kubelogin::version_of(&f.path)
                    .await
                    .unwrap_or_else(|e| format!("version unknown: {e:#}"));
                println!(
                    "{:<24} {:<10} {} (kubelogin {v}; `login.via: kubelogin` scenarios and `lab up` use it)",
                    t.name,
                    f.via,
                    f.path.display()
                )
            }
            Some(f) => println!("{:<24} {:<10} {}", t.name, f.via, f.path.display()),
            None if t.name == crate::tools::KANIDMD.name
                && crate::tools::docker_socket_present() =>
            {
                println!(
                    "{:<24} {:<10} - (the local backend runs the Kanidm image instead; see below)",
                    t.name, "not found"
                )
            }
            None => {
                if !optional {
                    missing_local = true;
                }
                println!(
                    "{:<24} {:<10} -\n{:<24} help: {}",
                    t.name, "MISSING", "", t.how_to_get
                );
            }
        }
    }
    // No kanidmd binary and no Kanidm image in Docker: nothing to run Kanidm with.
    if crate::tools::KANIDMD.find().is_none()
        && crate::tools::docker_socket_present()
        && crate::tools::missing_for_local().contains(&crate::tools::KANIDMD.name)
    {
        missing_local = true;
        println!(
            "{:<24} {:<10} neither a kanidmd binary nor the Kanidm image is here\n{:<24} help: {}",
            "Kanidm",
            "MISSING",
            "",
            crate::tools::KANIDMD.how_to_get
        );
    }
    if let Some(d) = std::env::var_os("KANIDM_UI_DIR") {
        println!(
            "{:<24} {:<10} {}",
            "kanidm web UI",
            "env",
            PathBuf::from(d).display()
        );
    }
    println!(
        "\nlocal backend: Kubernetes control planes (kube-apiserver + kube-controller-manager)"
    );
    for (m, version, via) in minors {
        println!("  1.{m:<22} {version:<10} {via}");
    }
    if minors.is_empty() {
        missing_local = true;
        println!(
            "  none found\n  help: `cargo xtask setup --k8s 1.36` downloads one; or set KUBEBUILDER_ASSETS to a folder with one subfolder per minor (1.36/kube-apiserver, …)"
        );
    }
    match crate::tools::cache_dir() {
        Some(c) => println!("  setup cache: {}", c.display()),
        None => println!("  setup cache: none (set LAB_CACHE_DIR or HOME)"),
    }
    missing_local
}

/// Each minor with a kind config: its node image (override or pinned) and whether Docker has it.
/// Returns the minors that can run.
async fn node_images(
    overrides: &crate::render::kind_config::ImageOverrides,
    kind_configs: &Path,
) -> Vec<String> {
    let mut runnable = Vec::new();
    for minor in crate::render::K8sVersion::MIN.minor..=crate::render::K8sVersion::MAX.minor {
        let v = crate::render::K8sVersion { minor };
        let base = crate::render::kind_config::base_config_path(kind_configs, v);
        let Ok(text) = std::fs::read_to_string(&base) else {
            continue;
        };
        let how = if overrides.node.contains_key(&v) {
            "override"
        } else {
            "pinned"
        };
        let image = overrides.node_image(v, &text).unwrap_or_default();
        let present = crate::cluster::kind::image_present(&image).await;
        if present {
            runnable.push(v.to_string());
        }
        println!(
            "  node image {v:<12} {image} ({how}, {})",
            if present { "present" } else { "not in Docker" }
        );
    }
    runnable
}

/// Print which components were found and what each backend can run; true when at least one
/// backend can run here (`cargo xtask doctor`'s exit status).
pub async fn report(
    overrides: &crate::render::kind_config::ImageOverrides,
    kind_configs: &Path,
) -> bool {
    // Each kube-apiserver is asked for its version once.
    let minors = crate::tools::local_minors(&crate::tools::Places::from_env()).await;
    let missing_local = components(&minors).await;
    // The kind backend: Docker, kind, and the images it would run.
    println!("\nkind backend");
    let mut kind_ready = crate::tools::KIND.find().is_some()
        && crate::tools::CHROMEDRIVER.find().is_some()
        && crate::tools::KUBECTL.find().is_some();
    match crate::cluster::kind::docker_cgroup_version().await {
        Ok(v) => println!(
            "  Docker engine           running, cgroup v{v}{}",
            if v == "1" {
                " (kubelet 1.35+ gets `failCgroupV1: false`)"
            } else {
                ""
            }
        ),
        Err(e) => {
            kind_ready = false;
            println!("  Docker engine           NOT available: {e:#}");
        }
    }
    let kanidm = overrides.kanidm_image();
    let kanidm_present = crate::cluster::kind::image_present(kanidm).await;
    println!(
        "  Kanidm image            {kanidm} {}{}",
        if overrides.kanidm.is_some() {
            "(override) "
        } else {
            ""
        },
        if kanidm_present {
            "present"
        } else {
            "not in Docker (pulled at run time if a registry is reachable)"
        }
    );
    let runnable = node_images(overrides, kind_configs).await;
    if runnable.is_empty() {
        println!(
            "  help: with no registry, load or build a node image and pass --node-image <minor>=<image> (env LAB_NODE_IMAGES)"
        );
    }
    let local_minors: Vec<String> = minors.iter().map(|(m, _, _)| format!("1.{m}")).collect();
    if missing_local {
        println!(
            "\nThe local backend cannot run until the missing components are installed (`cargo xtask setup` fetches Kubernetes, etcd and kind)."
        );
    } else {
        println!(
            "\nEverything the local backend needs is here for Kubernetes {}: `cargo xtask e2e --k8s {}`.",
            local_minors.join(", "),
            local_minors.join(",")
        );
    }
    if kind_ready && kanidm_present && !runnable.is_empty() {
        println!(
            "The kind backend can run Kubernetes {} here: `cargo xtask e2e --backend kind --k8s {}`.",
            runnable.join(", "),
            runnable.join(",")
        );
    } else if kind_ready {
        println!(
            "The kind backend can run where the images above can be pulled (or are given with --node-image / --kanidm-image)."
        );
    } else {
        println!("The kind backend cannot run here yet (see above).");
    }
    !missing_local || kind_ready
}
