//! `scenarios import`: one `kanidm` grammar both ways (what `render` prints reads back into
//! the same Kanidm state, for every shipped scenario), the two posts' own commands and files
//! imported into scenarios shaped like the shipped ones, and hostile inputs refused with a
//! location.

use harness::explain::source::AuthSource;
use harness::import::{Inputs, import, kanidm_cli, transcript};
use harness::scenario::{discover, load_file, load_str};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Kanidm state with everything in a fixed order, for comparing.
fn normal(s: &harness::scenario::model::KanidmState) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap();
    let sort = |a: &mut serde_json::Value, key: &str| {
        if let Some(arr) = a.as_array_mut() {
            arr.sort_by(|x, y| x[key].to_string().cmp(&y[key].to_string()));
        }
    };
    sort(&mut v["groups"], "name");
    sort(&mut v["persons"], "name");
    sort(&mut v["oauth2Clients"], "name");
    for p in v["persons"].as_array_mut().into_iter().flatten() {
        if let Some(g) = p["groups"].as_array_mut() {
            g.sort_by_key(|x| x.to_string());
        }
    }
    for c in v["oauth2Clients"].as_array_mut().into_iter().flatten() {
        for k in ["scopeMaps", "supScopeMaps"] {
            sort(&mut c[k], "group");
        }
        if let Some(m) = c["claimMaps"].as_array_mut() {
            m.sort_by_key(|x| format!("{}{}", x["claim"], x["group"]));
        }
    }
    v
}

#[test]
fn what_render_prints_reads_back_into_the_same_kanidm_state() {
    let mut checked = 0;
    for path in discover(&root().join("scenarios")).unwrap() {
        let s = load_file(&path).unwrap();
        let plan = harness::kanidm::plan::plan(None, &s.scenario.kanidm).unwrap();
        let text: String = plan.ops.iter().map(|o| format!("{o}\n")).collect();
        let cmds = transcript::read(&text, &BTreeMap::new()).unwrap();
        let mut b = kanidm_cli::Builder::default();
        for c in &cmds {
            assert_eq!(
                b.apply(&c.words),
                Ok(kanidm_cli::Effect::Applied),
                "{}: `{}`",
                path.display(),
                c.words.join(" ")
            );
        }
        for l in text.lines() {
            b.credential_comment(l);
        }
        assert!(b.notes.is_empty(), "{}: {:?}", path.display(), b.notes);
        assert_eq!(
            normal(&b.state),
            normal(&s.scenario.kanidm),
            "{}: the lines\n{text}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 28, "{checked}");
}

fn binding<'a>(
    s: &'a harness::scenario::LoadedScenario,
    role: &str,
) -> Vec<&'a harness::scenario::model::Binding> {
    s.scenario
        .rbac
        .bindings
        .iter()
        .filter(|b| b.cluster_role.value == role)
        .collect()
}

#[test]
fn post_1s_commands_and_files_import_into_post1_structured() {
    let inputs = harness::testsupport::post_import_inputs(1, true);
    let yaml = import(&inputs).unwrap_or_else(|e| panic!("{e:?}"));
    let s = load_str(Path::new("post1-imported.yaml"), &yaml).unwrap();
    let shipped = load_file(&root().join("scenarios/post1-structured.yaml")).unwrap();
    // The API server's authentication: the same mapping as the shipped scenario.
    let jwt = &s
        .scenario
        .api_server
        .value
        .structured
        .as_ref()
        .unwrap()
        .value
        .jwt;
    let want = &shipped
        .scenario
        .api_server
        .value
        .structured
        .as_ref()
        .unwrap()
        .value
        .jwt;
    assert_eq!(jwt[0].issuer.client.value, "k8s");
    assert_eq!(
        jwt[0].claim_mappings.username,
        want[0].claim_mappings.username
    );
    assert_eq!(jwt[0].claim_mappings.groups, want[0].claim_mappings.groups);
    // RBAC: view for k8s_users, cluster-admin for k8s_admins, by the lab's domain.
    assert_eq!(binding(&s, "view")[0].groups, ["k8s_users@${domain}"]);
    assert_eq!(
        binding(&s, "cluster-admin")[0].groups,
        ["k8s_admins@${domain}"]
    );
    // Kanidm: the public client with localhost redirects, the scope map, alice in k8s_users.
    let k = &s.scenario.kanidm;
    let c = &k.oauth2_clients[0];
    assert!(c.public && c.localhost_redirects);
    assert_eq!(c.landing_url, "https://kubernetes.io/");
    assert_eq!(c.scope_maps[0].group.value, "k8s_users");
    assert_eq!(k.persons[0].name.value, "alice");
    assert_eq!(k.persons[0].groups[0].value, "k8s_users");
    // The login is the post's exec block through kubelogin, issuer made the lab's.
    let exec = &s
        .scenario
        .login
        .kubelogin
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap()
        .value;
    let args: Vec<&str> = exec.args.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(
        args,
        [
            "oidc-login",
            "get-token",
            "--oidc-issuer-url=${issuer:k8s}",
            "--oidc-client-id",
            "k8s",
            "--oidc-extra-scope",
            "openid profile groups email"
        ]
    );
    // The expectation skeleton: alice has view, not more.
    let e = &s.scenario.expect[0];
    assert_eq!(e.person.value, "alice");
    let w = e.whoami.as_ref().unwrap();
    assert_eq!(w.username.as_deref(), Some("alice@${domain}"));
    assert_eq!(w.groups_include, ["k8s_users@${domain}"]);
    assert!(
        e.allowed
            .iter()
            .any(|a| a.value.to_string() == "list pods -A")
    );
    assert!(
        e.forbidden
            .iter()
            .any(|a| a.value.to_string() == "delete namespace scratch")
    );
    // The header says where things came from and what was rewritten or left out.
    for want in [
        "`<MY KANIDM ADDRESS>` (a placeholder in your file)",
        "domain `my-kanidm-address.invalid` → `${domain}`",
        "# not imported: ",
        "kanidm system oauth2 get k8s`: read-only",
        "person `alice` was not created by these commands",
        "no CA (the system's public CAs) → the lab's CA",
    ] {
        assert!(yaml.contains(want), "{want}\n{yaml}");
    }
}

#[test]
fn post_2s_console_blocks_and_flags_import_into_post2_as_written() {
    let inputs = harness::testsupport::post_import_inputs(2, true);
    let yaml = import(&inputs).unwrap_or_else(|e| panic!("{e:?}"));
    let s = load_str(Path::new("post2-imported.yaml"), &yaml).unwrap();
    let shipped = load_file(&root().join("scenarios/post2-as-written.yaml")).unwrap();
    let f = &s
        .scenario
        .api_server
        .value
        .legacy_flags
        .as_ref()
        .unwrap()
        .value;
    let want = &shipped
        .scenario
        .api_server
        .value
        .legacy_flags
        .as_ref()
        .unwrap()
        .value;
    assert_eq!(f.client.value, want.client.value);
    assert!(
        f.signing_algs.is_empty(),
        "post 2 as written: the RS256 default"
    );
    // The user binding by UUID maps to datosh, whose UUID `kanidm person get` printed.
    assert_eq!(
        binding(&s, "cluster-admin")[0].users,
        ["${issuer:k8s}#${uuid:datosh}"]
    );
    let k = &s.scenario.kanidm;
    assert_eq!(k.persons[0].name.value, "datosh");
    assert_eq!(k.persons[0].display_name, "Fabian Kammel");
    assert_eq!(k.persons[0].mail, ["fabian@kammel.dev"]);
    let c = &k.oauth2_clients[0];
    assert_eq!(c.redirect_urls, ["http://localhost:8000"]);
    assert!(c.localhost_redirects);
    // Their login: `kubectl oidc-login setup` with the two flags.
    let setup = s
        .scenario
        .login
        .kubelogin
        .as_ref()
        .unwrap()
        .setup
        .as_ref()
        .unwrap();
    let words: Vec<&str> = setup.value.iter().map(|w| w.value.as_str()).collect();
    assert_eq!(
        words,
        ["--oidc-issuer-url=${issuer:k8s}", "--oidc-client-id=k8s"]
    );
    // The skeleton expects datosh to be cluster-admin as `<issuer>#<uuid>`: what the post
    // wanted; the run shows the ES256 401 instead.
    let w = s.scenario.expect[0].whoami.as_ref().unwrap();
    assert_eq!(w.username.as_deref(), Some("${issuer:k8s}#${uuid:datosh}"));
    for want in [
        "user `https://sso.kammel.dev/oauth2/openid/k8s#7b89b6ea-1e8b-4aa8-98fb-a70cba498d16` → `${issuer:k8s}#${uuid:datosh}`",
        "kanidm login`: the lab logs in as idm_admin itself",
        "create-reset-token datosh`: the lab generates and enrols",
    ] {
        assert!(yaml.contains(want), "{want}\n{yaml}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn hostile_inputs_get_located_errors() {
    let d = tempfile::tempdir().unwrap();
    let flags = "--oidc-issuer-url=https://idm.example.com/oauth2/openid/k8s --oidc-client-id=k8s";
    let base = |cmds: &Path| Inputs {
        auth: Some((AuthSource::Flags(flags.into()), "--oidc-flags".into())),
        kanidm_commands: Some(cmds.to_path_buf()),
        ..Default::default()
    };
    let cases: &[(&str, &str, &str)] = &[
        (
            "quotes.sh",
            "kanidm group create k8s_users\nkanidm person create alice 'Alice\n",
            "quotes.sh:2:1: unbalanced quotes",
        ),
        (
            "unknown.sh",
            "kanidm group create g\nkanidm system oauth2 frobnicate k8s\n",
            "unknown.sh:2:1: `kanidm system oauth2 frobnicate` is a command the lab does not model",
        ),
        (
            "var.sh",
            "kanidm group create ${GROUP}\n",
            "var.sh:1:21: the variable `GROUP` has no value here",
        ),
        ("noclient.sh", "kanidm group create g\n", "never create"),
        (
            "nobody.sh",
            "kanidm group create g\nkanidm system oauth2 create-public k8s K https://k/\n",
            "nobody to log in",
        ),
        (
            "before.sh",
            "kanidm system oauth2 update-scope-map k8s g openid\n",
            "before.sh:1:1: group `g` was not created by an earlier line",
        ),
    ];
    for (file, text, want) in cases {
        let p = write(d.path(), file, text);
        let errs = import(&base(&p)).unwrap_err();
        let all = errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains(want), "{file}: {all}");
    }
    // A 10 MB file is refused before it is read.
    let big = write(d.path(), "big.sh", &"# x\n".repeat(2_600_000));
    let all = format!("{:?}", import(&base(&big)).unwrap_err());
    assert!(
        all.contains("big.sh") && all.contains("at most 1048576 are read"),
        "{all}"
    );
    // RBAC: unknown kinds listed, truncated YAML located, an unknown role refused.
    let ok_cmds = write(
        d.path(),
        "ok.sh",
        "kanidm group create g\nkanidm person create p P\nkanidm group add-members g p\nkanidm system oauth2 create-public k8s K https://k/\nkanidm system oauth2 update-scope-map k8s g openid groups\n",
    );
    let rb = write(
        d.path(),
        "rbac.yaml",
        "kind: ConfigMap\nmetadata: {name: c}\n---\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: ClusterRole, name: view}\nsubjects: [{kind: Group, name: g@idm.example.com}]\n",
    );
    let yaml = import(&Inputs {
        rbac: vec![rb],
        ..base(&ok_cmds)
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(yaml.contains("# not imported: ConfigMap `c`"), "{yaml}");
    assert!(yaml.contains("g@${domain}"), "{yaml}");
    let truncated = write(
        d.path(),
        "cut.yaml",
        "kind: ClusterRoleBinding\nmetadata: {name: b\n",
    );
    let all = format!(
        "{:?}",
        import(&Inputs {
            rbac: vec![truncated],
            ..base(&ok_cmds)
        })
        .unwrap_err()
    );
    assert!(
        all.contains("cut.yaml") && all.contains("not YAML"),
        "{all}"
    );
    let role = write(
        d.path(),
        "role.yaml",
        "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: ClusterRole, name: pod-reader}\nsubjects: [{kind: Group, name: g}]\n",
    );
    let all = format!(
        "{:?}",
        import(&Inputs {
            rbac: vec![role],
            ..base(&ok_cmds)
        })
        .unwrap_err()
    );
    assert!(all.contains("ClusterRole `pod-reader`"), "{all}");
    // An issuer that is not Kanidm is said so.
    let google = Inputs {
        auth: Some((
            AuthSource::Flags(
                "--oidc-issuer-url=https://accounts.google.com --oidc-client-id=x".into(),
            ),
            "--oidc-flags".into(),
        )),
        ..base(&ok_cmds)
    };
    let all = format!("{:?}", import(&google).unwrap_err());
    assert!(all.contains("Kanidm"), "{all}");
}

#[test]
fn a_static_pod_manifest_and_a_second_issuer_import_as_they_should() {
    let d = tempfile::tempdir().unwrap();
    let cmds = write(
        d.path(),
        "cmds.sh",
        "kanidm group create k8s_users\nkanidm person create datosh 'Fabian Kammel'\nkanidm group add-members k8s_users datosh\nkanidm system oauth2 create-public k8s k8s http://localhost:8000\nkanidm system oauth2 update-scope-map k8s k8s_users openid groups\n",
    );
    // Post 2 with its fix, as the static pod manifest has it.
    let manifest = write(
        d.path(),
        "kube-apiserver.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver, namespace: kube-system}\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.36.2\n    command:\n    - kube-apiserver\n    - --oidc-issuer-url=https://sso.kammel.dev/oauth2/openid/k8s\n    - --oidc-client-id=k8s\n    - --oidc-signing-algs=ES256\n    - --oidc-groups-claim=groups\n",
    );
    let yaml = import(&Inputs {
        auth: Some((
            AuthSource::Manifest(manifest),
            "--manifest kube-apiserver.yaml".into(),
        )),
        kanidm_commands: Some(cmds.clone()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    let s = load_str(Path::new("m.yaml"), &yaml).unwrap();
    let f = &s
        .scenario
        .api_server
        .value
        .legacy_flags
        .as_ref()
        .unwrap()
        .value;
    let algs: Vec<&str> = f.signing_algs.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(algs, ["ES256"]);
    assert_eq!(f.groups_claim.as_deref(), Some("groups"));
    // A structured config with a second, non-Kanidm issuer: that one is said, not dropped.
    let cfg = write(
        d.path(),
        "auth.yaml",
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer: {url: https://sso.kammel.dev/oauth2/openid/k8s, audiences: [k8s]}\n  claimMappings: {username: {claim: sub, prefix: 'https://sso.kammel.dev/oauth2/openid/k8s#'}}\n- issuer: {url: https://accounts.google.com, audiences: [x]}\n  claimMappings: {username: {claim: email, prefix: ''}}\n",
    );
    let yaml = import(&Inputs {
        auth: Some((
            AuthSource::ConfigFile(cfg),
            "--auth-config auth.yaml".into(),
        )),
        kanidm_commands: Some(cmds.clone()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        yaml.contains("# not imported: jwt[1] with issuer `https://accounts.google.com`"),
        "{yaml}"
    );
    let s = load_str(Path::new("c.yaml"), &yaml).unwrap();
    let jwt = &s
        .scenario
        .api_server
        .value
        .structured
        .as_ref()
        .unwrap()
        .value
        .jwt;
    assert_eq!(jwt.len(), 1);
    assert_eq!(
        jwt[0].claim_mappings.username.prefix.as_deref(),
        Some("${issuer:k8s}#")
    );
    assert_eq!(
        s.scenario.expect[0]
            .whoami
            .as_ref()
            .unwrap()
            .username
            .as_deref(),
        Some("${issuer:k8s}#${uuid:datosh}")
    );
    // A config the API server would refuse is refused, in its words.
    let bad = write(
        d.path(),
        "bad.yaml",
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer: {url: https://sso.kammel.dev/oauth2/openid/k8s, audiences: [k8s]}\n  claimMappings: {username: {claim: sub}}\n  bogus: 1\n",
    );
    let all = format!(
        "{:?}",
        import(&Inputs {
            auth: Some((AuthSource::ConfigFile(bad), "--auth-config bad.yaml".into())),
            kanidm_commands: Some(cmds),
            ..Default::default()
        })
        .unwrap_err()
    );
    assert!(
        all.contains("bogus") || all.contains("unknown field"),
        "{all}"
    );
}
