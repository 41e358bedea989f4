//! The kind backend for real: a kind cluster, Kanidm as a container in the node's network
//! namespace, logins through Kanidm's UI. Runs whenever a Docker engine, kind, the node image
//! and the Kanidm image are present (overrides from LAB_NODE_IMAGES / LAB_KANIDM_IMAGE, minor
//! from LAB_KIND_TEST_K8S, default 1.36); skipped loudly otherwise.
//!
//! Three scenarios cover the three ways the backend changes authentication: a structured
//! reload in place (post 1), a static-pod restart onto `--oidc-*` flags (post 2 as written),
//! and a structured config whose authenticator cannot initialise, which the API server
//! never reloads (untrusted CA): each must run against its own config.

use harness::cluster::kind::{KindSettings, docker_cgroup_version, image_present};
use harness::render::K8sVersion;
use harness::render::kind_config::ImageOverrides;
use harness::run::{E2eOptions, e2e};
use harness::scenario::load_file;
use std::path::PathBuf;

use harness::skipped;

/// The kind tests of this binary share one process id (cluster names and container labels
/// carry it, and each test checks that nothing of it is left): one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The minor and images to run kind with, or None (said through `skipped!`) when a Docker
/// engine, kind, kubectl, Chromium, chromedriver or an image is missing.
async fn kind_here() -> Option<(K8sVersion, ImageOverrides, PathBuf)> {
    harness::init_crypto();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let v: K8sVersion = std::env::var("LAB_KIND_TEST_K8S")
        .unwrap_or_else(|_| "1.36".into())
        .parse()
        .unwrap();
    let mut images = ImageOverrides::default();
    for spec in std::env::var("LAB_NODE_IMAGES")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
    {
        images.add_node_image(spec.trim()).unwrap();
    }
    images.kanidm = std::env::var("LAB_KANIDM_IMAGE")
        .ok()
        .filter(|s| !s.is_empty());
    if let Err(e) = docker_cgroup_version().await {
        skipped!("kind e2e needs a Docker engine: {e:#}");
        return None;
    }
    let missing: Vec<&str> = [
        &harness::tools::KIND,
        &harness::tools::KUBECTL,
        &harness::tools::CHROMEDRIVER,
        &harness::tools::CHROMIUM,
    ]
    .iter()
    .filter(|t| t.find().is_none())
    .map(|t| t.name)
    .collect();
    if !missing.is_empty() {
        skipped!("kind e2e needs {}", missing.join(", "));
        return None;
    }
    let base = std::fs::read_to_string(root.join(format!("kind-configs/kind-{v}.yaml"))).unwrap();
    let node_image = images.node_image(v, &base).unwrap();
    for image in [node_image.as_str(), images.kanidm_image()] {
        if !image_present(image).await {
            skipped!(
                "kind e2e needs the image {image} in Docker (LAB_NODE_IMAGES / LAB_KANIDM_IMAGE name local ones)"
            );
            return None;
        }
    }
    Some((v, images, root))
}

/// `scenarios` on the kind backend (in the order that needs fewest API server switches),
/// with `jobs` labs at once (None: `LAB_JOBS`, else the default).
async fn run_on_kind(
    v: K8sVersion,
    images: ImageOverrides,
    root: &std::path::Path,
    scenarios: Vec<harness::scenario::LoadedScenario>,
    jobs: Option<usize>,
) -> harness::run::RunReport {
    let artifacts = tempfile::tempdir().unwrap();
    let base = harness::testsupport::e2e_options(scenarios, artifacts.path());
    e2e(E2eOptions {
        k8s: vec![v],
        backend: harness::cluster::Backend::Kind,
        order_for_speed: true,
        jobs: jobs.or(base.jobs),
        kind: KindSettings {
            configs: root.join("kind-configs"),
            images,
        },
        ..base
    })
    .await
    .unwrap()
}

/// Nothing of this process is left in Docker: no kind cluster, no labelled container.
fn nothing_left_behind() {
    let clusters = std::process::Command::new(harness::tools::KIND.require().unwrap())
        .args(["get", "clusters"])
        .output()
        .unwrap();
    let ours = format!("kanidm-lab-{}", std::process::id());
    assert!(
        !String::from_utf8_lossy(&clusters.stdout)
            .lines()
            .any(|l| l.trim() == ours || l.trim().starts_with(&format!("{ours}-"))),
        "cluster {ours} left behind"
    );
    let containers = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=kanidm-k8s-lab/pid={}", std::process::id()),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&containers.stdout)
            .trim()
            .is_empty(),
        "Kanidm container left behind"
    );
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn kind_backend_structured_flags_and_uninitialisable_config() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((v, images, root)) = kind_here().await else {
        return;
    };
    let scenarios = ["post1-structured", "post2-as-written", "untrusted-ca"]
        .iter()
        .map(|n| load_file(&root.join(format!("scenarios/{n}.yaml"))).unwrap())
        .collect();
    let report = run_on_kind(v, images, &root, scenarios, None).await;
    let table = harness::report::summary_table(&report.results);
    assert_eq!(report.failed(), 0, "{table}");
    let find =
        |scenario: &str, check: &str| harness::testsupport::find_check(&report, scenario, check);
    assert_eq!(
        find("post1-structured", "forbidden: delete namespace scratch").actual,
        "Forbidden (403)"
    );
    let r = find("post2-as-written", "unauthorized: unsupported-signing-alg");
    assert!(
        r.apiserver_line
            .as_deref()
            .unwrap_or("")
            .contains(r#"expected ["RS256"] got "ES256""#),
        "{table}"
    );
    let r = find("untrusted-ca", "unauthorized: untrusted-ca");
    assert!(
        r.apiserver_line.as_deref().unwrap_or("").contains("x509"),
        "{table}"
    );
    // The API server that answered is this minor's, not some other binary.
    let version = report
        .versions
        .get("kube-apiserver")
        .cloned()
        .unwrap_or_default();
    assert!(
        version.starts_with(&format!("v1.{}.", v.minor)),
        "{version}"
    );
    nothing_left_behind();
}

/// Issue 23 on kind: real kubelogin (post 1's exec block, a silent refresh, two refreshes at
/// once on one cache) against the API server in a kind node, and a cell split over two kind
/// clusters (`--jobs 2`) whose results come back in the scenarios' order.
#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn kind_backend_kubelogin_on_two_clusters() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((v, images, root)) = kind_here().await else {
        return;
    };
    if harness::tools::KUBELOGIN.find().is_none() {
        skipped!(
            "kind kubelogin e2e needs kubelogin (KUBELOGIN_BIN or kubectl-oidc_login on PATH)"
        );
        return;
    }
    let names = ["kubelogin-post1", "kubelogin-refresh", "post2-user-binding"];
    let scenarios = names
        .iter()
        .map(|n| load_file(&root.join(format!("scenarios/{n}.yaml"))).unwrap())
        .collect();
    let report = run_on_kind(v, images, &root, scenarios, Some(2)).await;
    let table = harness::report::summary_table(&report.results);
    assert_eq!(report.failed(), 0, "{table}");
    assert_eq!(report.concurrency, 2, "two kind clusters: {table}");
    assert!(
        report.versions.contains_key("kubelogin"),
        "{:?}",
        report.versions
    );
    let seen: Vec<&str> = report.results.iter().map(|r| r.scenario.as_str()).collect();
    let mut order = seen.clone();
    order.dedup();
    assert_eq!(order, names, "the report keeps the scenarios' order");
    let refresh = report
        .results
        .iter()
        .find(|r| r.scenario == "kubelogin-refresh" && r.check.contains("refresh"))
        .unwrap_or_else(|| panic!("no refresh check: {table}"));
    assert!(refresh.actual.contains("silent"), "{table}");
    nothing_left_behind();
}
