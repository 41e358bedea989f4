//! The login driver against real headless Chromium and a test-double issuer (no kanidmd
//! needed, so CI runs it). The real-Kanidm login tests are in `real_kanidm.rs`.

mod fake_issuer;

use harness::kanidm::PersonSecrets;
use harness::login::browser::Browser;
use harness::login::flow::{LoginOutcomeActual, LoginRequest, Person, login};
use harness::pki::{self, ServingNames};

/// Say loudly that a test did not run (written straight to stderr, past libtest's capture).
macro_rules! skipped {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "\n==== SKIPPED: {} ====\n", format!($($arg)*));
    }};
}

fn browser_available() -> bool {
    let ok =
        harness::tools::CHROMEDRIVER.find().is_some() && harness::tools::CHROMIUM.find().is_some();
    if !ok {
        skipped!(
            "chromium/chromedriver not found ({})",
            harness::tools::CHROMEDRIVER.how_to_get
        );
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_in_through_the_browser_and_verifies_the_token() {
    harness::init_crypto();
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(
        &dir.path().join("pki"),
        &ServingNames::loopback(&["localhost"]),
        &ServingNames::loopback(&[]),
    )
    .unwrap();
    let chain = std::fs::read_to_string(&pki.kanidm_chain).unwrap();
    let key = std::fs::read_to_string(&pki.kanidm_key).unwrap();
    let fake = fake_issuer::FakeIssuer::start(&chain, &key).await;
    let http = harness::kanidm::server::lab_http_client(&pki.ca_pem).unwrap();
    let browser = Browser::start(&dir.path().join("browser")).await.unwrap();
    let scopes = vec!["openid".to_string()];
    let req = LoginRequest {
        issuer: &fake.issuer,
        origin: &fake.origin,
        client_id: "fake",
        scopes: &scopes,
        redirect_port: None,
        redirect_path: "/callback",
        spki_pin: &pki.kanidm_spki_sha256,
        artifacts: &dir.path().join("artifacts"),
    };
    let secrets = PersonSecrets {
        password: fake.password.clone(),
        totp: None,
        reset_token: None,
    };
    let out = login(
        &browser,
        &http,
        &req,
        &Person {
            name: "alice",
            secrets: &secrets,
            passkey: false,
        },
    )
    .await
    .unwrap();
    let LoginOutcomeActual::Token(tok) = out else {
        panic!("expected a token, got {out:?}")
    };
    assert_eq!(tok.alg, "ES256");
    assert_eq!(tok.claims["preferred_username"], "alice@localhost");

    // Access denied is a typed outcome, not an error.
    let denied = login(
        &browser,
        &http,
        &req,
        &Person {
            name: "outsider",
            secrets: &secrets,
            passkey: false,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(denied, LoginOutcomeActual::AccessDenied),
        "{denied:?}"
    );

    // A wrong password is reported with the page's reason, and artifacts are saved.
    let wrong = PersonSecrets {
        password: "nope".into(),
        totp: None,
        reset_token: None,
    };
    let failed = login(
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
    assert!(
        matches!(&failed, LoginOutcomeActual::LoginFailed(r) if r.contains("bad password")),
        "{failed:?}"
    );
    let art = dir.path().join("artifacts/login-bob");
    assert!(
        art.join("screenshot.png").exists()
            && art.join("page.html").exists()
            && art.join("url-trail.txt").exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_that_does_not_trust_the_issuer_key_fails_with_artifacts() {
    harness::init_crypto();
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(
        &dir.path().join("pki"),
        &ServingNames::loopback(&["localhost"]),
        &ServingNames::loopback(&[]),
    )
    .unwrap();
    let other = pki::generate(
        &dir.path().join("other"),
        &ServingNames::loopback(&["localhost"]),
        &ServingNames::loopback(&[]),
    )
    .unwrap();
    let fake = fake_issuer::FakeIssuer::start(
        &std::fs::read_to_string(&pki.kanidm_chain).unwrap(),
        &std::fs::read_to_string(&pki.kanidm_key).unwrap(),
    )
    .await;
    let http = harness::kanidm::server::lab_http_client(&pki.ca_pem).unwrap();
    let browser = Browser::start(&dir.path().join("browser")).await.unwrap();
    let scopes = vec!["openid".to_string()];
    let req = LoginRequest {
        issuer: &fake.issuer,
        origin: &fake.origin,
        client_id: "fake",
        scopes: &scopes,
        redirect_port: None,
        redirect_path: "/callback",
        spki_pin: &other.kanidm_spki_sha256, // pinned to a different key: TLS must fail
        artifacts: &dir.path().join("artifacts"),
    };
    let secrets = PersonSecrets {
        password: fake.password.clone(),
        totp: None,
        reset_token: None,
    };
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        login(
            &browser,
            &http,
            &req,
            &Person {
                name: "alice",
                secrets: &secrets,
                passkey: false,
            },
        ),
    )
    .await
    .expect("must fail, not hang")
    .expect_err("an untrusted certificate must not be accepted");
    assert!(format!("{err:#}").contains("screenshot"), "{err:#}");
    assert!(dir.path().join("artifacts/login-alice/page.html").exists());
}
