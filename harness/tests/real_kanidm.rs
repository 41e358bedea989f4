//! Against a real kanidmd (found via KANIDMD_BIN or PATH; skipped loudly otherwise):
//! provision every shipped scenario, read it back, and log people in through the real UI.

use harness::kanidm::reconcile::Desired;
use harness::kanidm::server::{LocalKanidm, check_version, lab_http_client};
use harness::kanidm::{admin, readback};
use harness::login::browser::Browser;
use harness::login::flow::{LoginOutcomeActual, LoginRequest, Person, login};
use harness::pki::{self, ServingNames};
use harness::scenario::{discover, load_file};
use std::path::PathBuf;
use std::time::Instant;

/// Say loudly that a test did not run (written straight to stderr, past libtest's capture).
use harness::skipped;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kanidmd_available() -> bool {
    let found = harness::tools::KANIDMD.find().is_some();
    if !found {
        skipped!(
            "kanidmd not found (set KANIDMD_BIN): {}",
            harness::tools::KANIDMD.how_to_get
        );
    }
    found
}

/// The lab PKI and an HTTP client trusting only its CA.
fn lab_pki(dir: &std::path::Path) -> (pki::LabPki, reqwest::Client) {
    let pki = pki::generate(
        &dir.join("pki"),
        &ServingNames::loopback(&["localhost"]),
        &ServingNames::loopback(&[]),
    )
    .unwrap();
    let http = lab_http_client(&pki.ca_pem).unwrap();
    (pki, http)
}

/// A kanidmd in `dir` and an `idm_admin` client for it; None (said loudly) when the server
/// is not the version `kanidm_client` speaks.
async fn start_kanidm(
    dir: &std::path::Path,
    pki: &pki::LabPki,
    http: &reqwest::Client,
) -> Option<(LocalKanidm, kanidm_client::KanidmClient)> {
    std::fs::create_dir_all(dir).unwrap();
    let kanidmd = harness::tools::KANIDMD.require().unwrap();
    let mut server = LocalKanidm::start(&kanidmd, dir, pki, http, harness::process::free_port)
        .await
        .unwrap();
    if let Err(e) = check_version(server.version.as_deref()) {
        skipped!("{e}");
        server.stop().await;
        return None;
    }
    let pw = server.recover_account("idm_admin").await.unwrap();
    let kc = admin::admin_client(&server.endpoint, &pw).await.unwrap();
    Some((server, kc))
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn provisions_every_scenario_and_reads_it_back() {
    harness::init_crypto();
    if !kanidmd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pki, http) = lab_pki(dir.path());
    let mut checked = 0;
    let mut pids = Vec::new();
    for (i, path) in discover(&root().join("scenarios"))
        .unwrap()
        .into_iter()
        .enumerate()
    {
        let s = load_file(&path).unwrap();
        let t = Instant::now();
        let Some((mut server, kc)) =
            start_kanidm(&dir.path().join(format!("k{i}")), &pki, &http).await
        else {
            return;
        };
        let applied = harness::kanidm::reconcile::reconcile(
            &kc,
            None,
            &Desired::of(&s),
            &http,
            &server.endpoint,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e:#}", s.name));
        let p = applied.provisioned;
        let took = t.elapsed();
        let problems = readback::verify(&s.scenario.kanidm, &p, &server.endpoint);
        assert!(problems.is_empty(), "{}: {problems:?}", s.name);
        for c in &s.scenario.kanidm.oauth2_clients {
            let rb = &p.clients[&c.name.value];
            let want = if c.legacy_crypto { "RS256" } else { "ES256" };
            assert_eq!(rb.signing_algs, [want], "{}", s.name);
        }
        assert_eq!(p.uuids.len(), s.scenario.kanidm.persons.len());
        eprintln!(
            "{}: kanidmd start → state applied in {:.2} s",
            s.name,
            took.as_secs_f64()
        );
        let pid = server.pid().expect("running server has a pid");
        server.stop().await;
        pids.push(pid);
        checked += 1;
    }
    assert!(checked >= 10);
    // No kanidmd we started is left running, and the lab's secrets go with the directory.
    for pid in pids {
        assert!(
            !harness::labkit::process_alive(pid),
            "kanidmd pid {pid} is still running"
        );
    }
    let pki_dir = dir.path().join("pki");
    drop(dir);
    assert!(!pki_dir.exists());
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn logs_in_through_the_real_kanidm_ui() {
    harness::init_crypto();
    if !kanidmd_available() || harness::tools::CHROMEDRIVER.find().is_none() {
        skipped!("needs kanidmd and chromedriver");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pki, http) = lab_pki(dir.path());
    let browser = Browser::start(&dir.path().join("browser")).await.unwrap();
    for (scenario, person, want) in [
        ("post1-structured", "alice", "ES256"),
        ("post2-fix-legacy-crypto", "datosh", "RS256"),
        ("login-denied-no-scope-map", "mallory", "denied"),
    ] {
        let s = load_file(&root().join(format!("scenarios/{scenario}.yaml"))).unwrap();
        let Some((mut server, kc)) = start_kanidm(&dir.path().join(scenario), &pki, &http).await
        else {
            return;
        };
        let p =
            harness::kanidm::reconcile::provision(&kc, &Desired::of(&s), &http, &server.endpoint)
                .await
                .unwrap();
        let issuer = server.endpoint.issuer("k8s");
        let req = LoginRequest {
            issuer: &issuer,
            origin: &server.endpoint.origin,
            client_id: "k8s",
            scopes: &s.scenario.login.scopes,
            redirect_port: None,
            redirect_path: "/callback",
            spki_pin: &pki.kanidm_spki_sha256,
            artifacts: &dir.path().join("artifacts"),
        };
        let t = Instant::now();
        let out = login(
            &browser,
            &http,
            &req,
            &Person {
                name: person,
                secrets: &p.secrets[person],
                passkey: false,
            },
        )
        .await
        .unwrap();
        eprintln!(
            "{scenario}/{person}: {} in {:.2} s",
            out.label(),
            t.elapsed().as_secs_f64()
        );
        match (want, out) {
            ("denied", LoginOutcomeActual::AccessDenied) => {}
            (alg, LoginOutcomeActual::Token(tok)) => {
                assert_eq!(tok.alg, alg);
                assert_eq!(tok.claims["aud"], "k8s");
                assert_eq!(tok.claims["sub"], p.uuids[person].as_str());
            }
            (w, other) => panic!("{scenario}: wanted {w}, got {other:?}"),
        }
        if scenario == "post1-structured" {
            // A forced failure: bob with a wrong password. Kanidm's "Login Failed" page is a
            // typed outcome, and the screenshot, page HTML and URL trail are saved.
            let mut wrong = p.secrets["bob"].clone();
            wrong.password = "not-bobs-password-at-all".into();
            let out = login(
                &browser,
                &http,
                &req,
                &Person {
                    name: "bob",
                    secrets: &wrong,
                    passkey: false,
                },
            )
            .await
            .unwrap();
            assert!(matches!(out, LoginOutcomeActual::LoginFailed(_)), "{out:?}");
            let art = dir.path().join("artifacts/login-bob");
            for f in ["screenshot.png", "page.html", "url-trail.txt"] {
                assert!(art.join(f).exists(), "{f} missing after a failed login");
            }
            let html = std::fs::read_to_string(art.join("page.html")).unwrap();
            assert!(
                html.contains("Login Failed"),
                "page.html is not Kanidm's failure page"
            );
        }
        server.stop().await;
    }
}

/// One server, every shipped scenario in a row (and back again), changed in place: after
/// each change the read-back must match the scenario exactly, and a state we break by hand
/// must be reported.
#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn changes_one_server_through_every_scenario_in_place() {
    harness::init_crypto();
    if !kanidmd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pki, http) = lab_pki(dir.path());
    let Some((mut server, kc)) = start_kanidm(&dir.path().join("kanidm"), &pki, &http).await else {
        return;
    };
    // The credential policy of `idm_all_persons` cannot change in place (a run starts a
    // fresh Kanidm there): walk each policy's scenarios on a server of its own.
    let all: Vec<_> = discover(&root().join("scenarios"))
        .unwrap()
        .into_iter()
        .map(|p| load_file(&p).unwrap())
        .collect();
    let policy = |s: &harness::scenario::LoadedScenario| {
        format!("{:?}", s.scenario.kanidm.credential_type_minimum)
    };
    let mut policies: Vec<String> = all.iter().map(policy).collect();
    policies.sort();
    policies.dedup();
    // The first policy's walk runs on `server` (it is broken by hand below); the others
    // each on a server of their own.
    let first: Vec<_> = all
        .iter()
        .filter(|s| policy(s) == policies[0])
        .cloned()
        .collect();
    for pol in &policies[1..] {
        let group: Vec<_> = all.iter().filter(|s| policy(s) == *pol).cloned().collect();
        let Some((mut other, kc2)) =
            start_kanidm(&dir.path().join(format!("kanidm-{pol}")), &pki, &http).await
        else {
            return;
        };
        walk_in_place(group, &kc2, &http, &other.endpoint).await;
        other.stop().await;
    }
    let (order, state) = walk_in_place(first, &kc, &http, &server.endpoint).await;

    // The read-back is not a formality: break the state by hand and it is reported.
    let last = order.last().unwrap();
    let client = &last.scenario.kanidm.oauth2_clients[0].name.value;
    kc.idm_oauth2_rs_enable_legacy_crypto(client).await.unwrap();
    kc.idm_group_purge_members("k8s_users").await.unwrap();
    let (_, mut p) = state.unwrap();
    p.clients.insert(
        client.clone(),
        readback::read_back(&kc, &http, &server.endpoint, client)
            .await
            .unwrap(),
    );
    p.members.insert(
        "k8s_users".into(),
        readback::read_members(&kc, "k8s_users").await.unwrap(),
    );
    let problems = readback::verify(&last.scenario.kanidm, &p, &server.endpoint);
    assert!(
        problems
            .iter()
            .any(|m| m.contains("oauth2_jwt_legacy_crypto_enable")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|m| m.starts_with("group k8s_users")),
        "{problems:?}"
    );
    server.stop().await;
}

/// Every scenario of `group` in a row and back again, changed in place on one server; the
/// read-back must match each exactly and kept persons keep their UUID.
async fn walk_in_place(
    group: Vec<harness::scenario::LoadedScenario>,
    kc: &kanidm_client::KanidmClient,
    http: &reqwest::Client,
    endpoint: &harness::kanidm::KanidmEndpoint,
) -> (
    Vec<harness::scenario::LoadedScenario>,
    Option<(harness::scenario::model::KanidmState, readback::Provisioned)>,
) {
    use harness::kanidm::plan::in_place_blocker;
    use harness::kanidm::reconcile::{Previous, reconcile};
    let mut order = group;
    let mut back = order.clone();
    back.reverse();
    order.extend(back.into_iter().skip(1));
    let mut state: Option<(harness::scenario::model::KanidmState, readback::Provisioned)> = None;
    let mut uuids_seen = std::collections::BTreeMap::new();
    for s in &order {
        if let Some((prev, _)) = &state {
            assert!(in_place_blocker(prev, &s.scenario.kanidm).is_none());
        }
        let t = Instant::now();
        let applied = reconcile(
            kc,
            state.as_ref().map(|(st, p)| Previous {
                state: st,
                provisioned: p,
            }),
            &Desired::of(s),
            http,
            endpoint,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e:#}", s.name));
        let problems = readback::verify(&s.scenario.kanidm, &applied.provisioned, endpoint);
        assert!(problems.is_empty(), "{}: {problems:#?}", s.name);
        // A kept person keeps their entry (UUID) unless their credential kind changed.
        for p in &s.scenario.kanidm.persons {
            let uuid = &applied.provisioned.uuids[&p.name.value];
            if let Some((kind, old)) = uuids_seen.get(&p.name.value)
                && *kind == p.credential
            {
                assert_eq!(old, uuid, "{}: {} was recreated", s.name, p.name.value);
            }
            uuids_seen.insert(p.name.value.clone(), (p.credential, uuid.clone()));
        }
        eprintln!(
            "{}: changed in place in {:.3} s ({} writes, recreated {:?})",
            s.name,
            t.elapsed().as_secs_f64(),
            applied.changes,
            applied.replaced_persons
        );
        state = Some((applied.server_state, applied.provisioned));
    }
    (order, state)
}

/// A port another process takes between our pick and kanidmd's bind (a concurrent lab did,
/// at four workers) costs a retry on a new port, not the scenario.
#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn a_port_taken_before_kanidmd_binds_it_is_replaced() {
    harness::init_crypto();
    if !kanidmd_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (pki, http) = lab_pki(tmp.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let mut offered = Vec::new();
    let ports = || {
        let p = match offered.is_empty() {
            true => taken_port,
            false => harness::process::free_port()?,
        };
        offered.push(p);
        Ok(p)
    };
    let kanidmd = harness::tools::KANIDMD.require().unwrap();
    let dir = tmp.path().join("kanidm");
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = LocalKanidm::start(&kanidmd, &dir, &pki, &http, ports)
        .await
        .unwrap();
    assert!(
        !server.endpoint.origin.ends_with(&format!(":{taken_port}")),
        "{}",
        server.endpoint.origin
    );
    let lost = std::fs::read_to_string(dir.join("kanidmd.port-lost-1.log")).unwrap();
    assert!(lost.contains("Address already in use"), "{lost}");
    // The server on the new port is a working one: it hands out an admin password.
    assert!(
        !server
            .recover_account("idm_admin")
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await;
    drop(taken);
}

/// A Kanidm that replaces the lab's takes over its port, so the origin and every issuer
/// URL stay (an API server trusting them can stay); a port taken meanwhile is replaced.
#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_kanidm_takes_over_its_predecessors_port() {
    use harness::cluster::KanidmPlacement;
    use harness::kanidm::KanidmSource;
    use harness::run::kanidm_lab::start_server;
    harness::init_crypto();
    if !kanidmd_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (pki, http) = lab_pki(tmp.path());
    let source = KanidmSource::Binary(harness::tools::KANIDMD.require().unwrap());
    let here = KanidmPlacement::HostLoopback;
    let mut first = start_server(&tmp.path().join("k1"), &pki, &http, (&here, None), &source)
        .await
        .unwrap();
    let port = first.port_to_reuse().unwrap();
    let origin = first.endpoint().origin.clone();
    first.stop().await;
    let mut second = start_server(
        &tmp.path().join("k2"),
        &pki,
        &http,
        (&here, Some(port)),
        &source,
    )
    .await
    .unwrap();
    assert_eq!(second.endpoint().origin, origin);
    assert_eq!(second.port_to_reuse(), Some(port));
    // A fresh server (its own database): it hands out a new admin password.
    assert!(
        !second
            .recover_account("idm_admin")
            .await
            .unwrap()
            .is_empty()
    );
    second.stop().await;
    // Taken by another process in between: the replacement serves on another port.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut third = start_server(
        &tmp.path().join("k3"),
        &pki,
        &http,
        (&here, Some(port)),
        &source,
    )
    .await
    .unwrap();
    assert_ne!(third.port_to_reuse(), Some(port));
    assert_ne!(third.endpoint().origin, origin);
    third.stop().await;
    drop(taken);
}
