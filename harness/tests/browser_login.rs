//! The login driver against real headless Chromium and a test-double issuer (no kanidmd
//! needed, so CI runs it). The real-Kanidm login tests are in `real_kanidm.rs`.

mod fake_issuer;

use harness::kanidm::PersonSecrets;
use harness::login::browser::Browser;
use harness::login::flow::{LoginOutcomeActual, LoginRequest, Person, login};
use harness::pki;

/// Say loudly that a test did not run (written straight to stderr, past libtest's capture).
use harness::skipped;

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

/// A test-double issuer with a lab PKI, an HTTPS client and a browser.
struct Rig {
    dir: tempfile::TempDir,
    pki: pki::LabPki,
    fake: fake_issuer::FakeIssuer,
    http: reqwest::Client,
    browser: Browser,
    scopes: Vec<String>,
    artifacts: std::path::PathBuf,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki::generate_local(&dir.path().join("pki")).unwrap();
        let chain = std::fs::read_to_string(&pki.kanidm_chain).unwrap();
        let key = std::fs::read_to_string(&pki.kanidm_key).unwrap();
        let fake = fake_issuer::FakeIssuer::start(&chain, &key).await;
        let http = harness::kanidm::server::lab_http_client(&pki.ca_pem).unwrap();
        let browser = Browser::start(&dir.path().join("browser")).await.unwrap();
        let artifacts = dir.path().join("artifacts");
        Rig {
            dir,
            pki,
            fake,
            http,
            browser,
            scopes: vec!["openid".into()],
            artifacts,
        }
    }

    /// A login request whose browser trusts exactly `spki_pin`.
    fn request<'a>(&'a self, spki_pin: &'a str) -> LoginRequest<'a> {
        LoginRequest {
            issuer: &self.fake.issuer,
            origin: &self.fake.origin,
            client_id: "fake",
            scopes: &self.scopes,
            redirect_port: None,
            redirect_path: "/callback",
            spki_pin,
            artifacts: &self.artifacts,
        }
    }

    async fn login(
        &self,
        req: &LoginRequest<'_>,
        name: &str,
        password: &str,
    ) -> anyhow::Result<LoginOutcomeActual> {
        let secrets = PersonSecrets {
            password: password.into(),
            totp: None,
            reset_token: None,
        };
        login(
            &self.browser,
            &self.http,
            req,
            &Person {
                name,
                secrets: &secrets,
                passkey: false,
            },
        )
        .await
    }
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn logs_in_through_the_browser_and_verifies_the_token() {
    harness::init_crypto();
    if !browser_available() {
        return;
    }
    let rig = Rig::new().await;
    let req = rig.request(&rig.pki.kanidm_spki_sha256);
    let out = rig.login(&req, "alice", &rig.fake.password).await.unwrap();
    let LoginOutcomeActual::Token(tok) = out else {
        panic!("expected a token, got {out:?}")
    };
    assert_eq!(tok.alg, "ES256");
    assert_eq!(tok.claims["preferred_username"], "alice@localhost");

    // Access denied is a typed outcome, not an error.
    let denied = rig
        .login(&req, "outsider", &rig.fake.password)
        .await
        .unwrap();
    assert!(
        matches!(denied, LoginOutcomeActual::AccessDenied),
        "{denied:?}"
    );

    // A wrong password is reported with the page's reason, and artifacts are saved.
    let failed = rig.login(&req, "bob", "nope").await.unwrap();
    assert!(
        matches!(&failed, LoginOutcomeActual::LoginFailed(r) if r.contains("bad password")),
        "{failed:?}"
    );
    let art = rig.dir.path().join("artifacts/login-bob");
    assert!(
        art.join("screenshot.png").exists()
            && art.join("page.html").exists()
            && art.join("url-trail.txt").exists()
    );
}

#[cfg_attr(
    not(lab_real),
    ignore = "needs real components; LAB_REAL=1 runs it (LAB_REQUIRE_REAL=1: and fails if one is missing)"
)]
#[tokio::test(flavor = "multi_thread")]
async fn a_browser_that_does_not_trust_the_issuer_key_fails_with_artifacts() {
    harness::init_crypto();
    if !browser_available() {
        return;
    }
    let rig = Rig::new().await;
    let other = pki::generate_local(&rig.dir.path().join("other")).unwrap();
    // Pinned to a different key: TLS must fail.
    let req = rig.request(&other.kanidm_spki_sha256);
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        rig.login(&req, "alice", &rig.fake.password),
    )
    .await
    .expect("must fail, not hang")
    .expect_err("an untrusted certificate must not be accepted");
    assert!(format!("{err:#}").contains("screenshot"), "{err:#}");
    assert!(
        rig.dir
            .path()
            .join("artifacts/login-alice/page.html")
            .exists()
    );
}
