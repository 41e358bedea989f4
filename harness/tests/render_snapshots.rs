//! Renderer output for every shipped scenario, snapshot-tested (insta).

use harness::render::{K8sVersion, LabFacts};
use harness::scenario::{discover, load_file};
use rstest::rstest;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[rstest]
#[case("1.36")]
#[case("1.33")]
fn render_every_scenario(#[case] version: &str) {
    let v: K8sVersion = version.parse().unwrap();
    for path in discover(&root().join("scenarios")).unwrap() {
        let s = load_file(&path).unwrap();
        let out = harness::render::plan::render_all(
            &s,
            &LabFacts::example(&s),
            v,
            &root().join("kind-configs"),
            &Default::default(),
        )
        .unwrap();
        insta::assert_snapshot!(format!("{}-{}", s.name, version), out);
    }
}

#[test]
fn structured_config_api_version_follows_the_minor() {
    let s = load_file(&root().join("scenarios/post1-structured.yaml")).unwrap();
    let facts = LabFacts::example(&s);
    let v133 = harness::render::authn_config::render(&s, &facts, "1.33".parse().unwrap())
        .unwrap()
        .unwrap();
    assert!(
        v133.contains("apiVersion: apiserver.config.k8s.io/v1beta1"),
        "{v133}"
    );
    let v134 = harness::render::authn_config::render(&s, &facts, "1.34".parse().unwrap())
        .unwrap()
        .unwrap();
    assert!(
        v134.contains("apiVersion: apiserver.config.k8s.io/v1\n"),
        "{v134}"
    );
}

#[test]
fn legacy_flags_default_to_rs256_by_omission() {
    let s = load_file(&root().join("scenarios/post2-as-written.yaml")).unwrap();
    let flags = harness::render::oidc_flags::render(&s, &LabFacts::example(&s))
        .unwrap()
        .unwrap();
    assert!(
        flags
            .iter()
            .any(|f| f == "--oidc-issuer-url=https://localhost:8443/oauth2/openid/k8s"),
        "{flags:?}"
    );
    assert!(
        flags.iter().any(|f| f == "--oidc-client-id=k8s"),
        "{flags:?}"
    );
    assert!(
        !flags.iter().any(|f| f.starts_with("--oidc-signing-algs")),
        "{flags:?}"
    );
    let fixed = load_file(&root().join("scenarios/post2-fix-signing-algs.yaml")).unwrap();
    let flags = harness::render::oidc_flags::render(&fixed, &LabFacts::example(&fixed))
        .unwrap()
        .unwrap();
    assert!(
        flags.iter().any(|f| f == "--oidc-signing-algs=ES256"),
        "{flags:?}"
    );
}

#[test]
fn every_kind_config_pins_a_digest_and_has_no_kubeadm_api_version() {
    for minor in 31..=37 {
        let p = root().join(format!("kind-configs/kind-1.{minor}.yaml"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.contains(&format!("kindest/node:v1.{minor}.")),
            "{}",
            p.display()
        );
        assert!(
            text.contains("@sha256:"),
            "{} is not pinned by digest",
            p.display()
        );
        assert!(
            !text.contains("kubeadm.k8s.io/"),
            "{} pins a kubeadm apiVersion (kind ignores it on other versions)",
            p.display()
        );
        let out = harness::render::kind_config::render(
            &text,
            std::path::Path::new("/lab/apiserver"),
            &[
                "authentication-config=/etc/kubernetes/kanidm-lab/authentication-config.yaml"
                    .into(),
            ],
            &harness::render::kind_config::KindNodeOptions::default(),
        )
        .unwrap();
        let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        let patches = v["nodes"][0]["kubeadmConfigPatches"].as_array().unwrap();
        assert_eq!(patches.len(), 2);
        assert!(patches[1].as_str().unwrap().contains(
            "authentication-config: /etc/kubernetes/kanidm-lab/authentication-config.yaml"
        ));
        assert_eq!(
            v["nodes"][0]["extraMounts"][0]["hostPath"],
            "/lab/apiserver"
        );
    }
}
