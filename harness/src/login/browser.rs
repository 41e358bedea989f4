//! Headless Chromium driven through chromedriver (WebDriver) — Kanidm's real login pages.
//!
//! chromedriver starts once per run; each person gets a fresh browser profile. The browser
//! trusts exactly Kanidm's serving key (`--ignore-certificate-errors-spki-list`), nothing else.

use crate::process::{ManagedProcess, free_port, tail};
use crate::tools;
use anyhow::{Context, Result, anyhow, bail};
use fantoccini::{Client, ClientBuilder};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A WebDriver extension command: POST `session/<id>/<path>` with a JSON body (WebAuthn's
/// virtual authenticators, chromedriver's DevTools bridge).
#[derive(Debug)]
pub struct SessionPost {
    pub path: &'static str,
    pub body: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for SessionPost {
    fn endpoint(
        &self,
        base: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

pub struct Browser {
    driver: ManagedProcess,
    url: String,
    profiles: PathBuf,
    chromium: PathBuf,
    /// Chromium's headless shell (the headless-only build), not the full browser.
    headless_shell: bool,
    counter: std::sync::atomic::AtomicU32,
}

/// Chromium is chromedriver's child, not ours, so our parent-death signal does not reach
/// it. Started through `setpriv --pdeathsig KILL` it dies with chromedriver, which dies with
/// us (`process::die_with_parent`): no browser outlives the harness, even after `kill -9`.
/// Without util-linux's `setpriv`, Chromium is started directly (and `clean` finds it by
/// its lab profile path).
fn dies_with_chromedriver(chromium: &Path, dir: &Path) -> Result<PathBuf> {
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        return Ok(chromium.to_path_buf());
    };
    let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"));
    let wrapper = dir.join("chromium-dies-with-chromedriver");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --pdeathsig KILL -- {} \"$@\"\n",
            quote(setpriv),
            quote(chromium)
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700))?;
    Ok(wrapper)
}

/// A Chrome DevTools command through chromedriver. (WebDriver's own cookie commands cannot
/// restore cookies for `localhost`: "invalid 'domain'".)
pub async fn cdp(
    client: &Client,
    cmd: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value> {
    client
        .issue_cmd(SessionPost {
            path: "goog/cdp/execute",
            body: json!({"cmd": cmd, "params": params}),
        })
        .await
        .map_err(|e| anyhow!("{cmd}: {e}"))
}

/// Open `url` in the session's page. `Some(code)`: Chromium could not load it
/// (`net::ERR_CERT_AUTHORITY_INVALID`, …); the headless shell's error page shows no code,
/// so it is taken from the navigation itself (DevTools `Page.navigate`).
pub async fn open(client: &Client, url: &str) -> Result<Option<String>> {
    let r = cdp(client, "Page.navigate", json!({ "url": url })).await?;
    Ok(r["errorText"]
        .as_str()
        .filter(|e| !e.is_empty())
        .map(str::to_string))
}

/// Whether `chromium` is Chromium's headless shell (`chrome-headless-shell`, Debian's
/// `chromium-headless-shell`).
fn is_headless_shell(chromium: &Path) -> bool {
    chromium
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("headless-shell"))
}

/// End a session: chromedriver closes its Chromium and waits for it to exit (~0.1 s here),
/// never longer than this; the lab's browsers are killed by their profile path anyway.
pub async fn close_session(client: Client) {
    let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
}

/// A new Chromium session (browser start included) takes 1–2 s here.
const SESSION_DEADLINE: Duration = Duration::from_secs(60);

impl Browser {
    pub async fn start(dir: &Path) -> Result<Browser> {
        let driver_bin = tools::CHROMEDRIVER.require()?;
        std::fs::create_dir_all(dir)?;
        let found = tools::CHROMIUM.require()?;
        let headless_shell = is_headless_shell(&found);
        let chromium = dies_with_chromedriver(&found, dir)?;
        let port = free_port()?;
        // Without `--allowed-ips` chromedriver listens on loopback only (127.0.0.1 and ::1);
        // with it, on every interface. Nobody else may drive the signed-in browser.
        let args = vec![format!("--port={port}")];
        // Chromium writes outside `--user-data-dir` too (crash reports under
        // `~/.config/chromium`, an NSS database under `~/.local/share/pki`, dconf's cache):
        // a home of the lab's own keeps the user's untouched, and goes with the lab.
        let home = dir.join("home");
        std::fs::create_dir_all(&home)?;
        let env = [
            ("HOME", home.display().to_string()),
            (
                "XDG_CONFIG_HOME",
                home.join(".config").display().to_string(),
            ),
            ("XDG_CACHE_HOME", home.join(".cache").display().to_string()),
            (
                "XDG_DATA_HOME",
                home.join(".local/share").display().to_string(),
            ),
        ];
        let mut driver = ManagedProcess::spawn(
            "chromedriver",
            &driver_bin,
            &args,
            None,
            &env,
            &dir.join("chromedriver.log"),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::wait::until(
            Duration::from_secs(15),
            Duration::from_millis(25),
            || {
                let alive = driver.ensure_running();
                let (http, url) = (&http, &url);
                async move {
                    alive?;
                    let up = http
                        .get(format!("{url}/status"))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    Ok(up.then_some(()))
                }
            },
            |after| {
                anyhow::anyhow!(
                    "chromedriver did not answer within {} s:\n{}",
                    after.as_secs(),
                    tail(&dir.join("chromedriver.log"), 10)
                )
            },
        )
        .await?;
        Ok(Browser {
            driver,
            url,
            profiles: dir.join("profiles"),
            chromium,
            headless_shell,
            counter: Default::default(),
        })
    }

    /// A fresh browser session with its own profile, trusting only `spki_pin`.
    pub async fn session(&self, label: &str, spki_pin: &str) -> Result<Client> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = self.profiles.join(format!("{label}-{n}"));
        std::fs::create_dir_all(&profile)?;
        let mut args = vec![
            "--no-sandbox".to_string(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-quic".into(),
            // Fewer processes: one renderer for Kanidm's pages and our redirect (no site
            // isolation; the browser shows nothing else), GPU and network service inside the
            // browser process, no zygote. Chromium's CPU over the posts' logins: 9.99 → 8.69 s
            // (medians of 5 pairs); the headless shell's 3.7–4.1 → 3.2–3.4 s (3 pairs).
            // `--single-process` saved more but crashed the full browser in 1 of 10 runs.
            "--renderer-process-limit=1".into(),
            "--disable-site-isolation-trials".into(),
            "--disable-features=site-per-process,IsolateOrigins".into(),
            "--in-process-gpu".into(),
            "--enable-features=NetworkServiceInProcess2".into(),
            "--no-zygote".into(),
            "--window-size=1024,900".into(),
            format!("--user-data-dir={}", profile.display()),
            format!("--ignore-certificate-errors-spki-list={spki_pin}"),
        ];
        // The headless shell is headless by build, and chromedriver knows it by this
        // browser name (as `chrome` it waits for a first tab the shell never opens).
        if !self.headless_shell {
            args.push("--headless=new".into());
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "browserName".into(),
            json!(if self.headless_shell {
                "chrome-headless-shell"
            } else {
                "chrome"
            }),
        );
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": self.chromium.to_string_lossy(), "args": args}),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let connect = builder.connect(&self.url);
        let client = tokio::time::timeout(SESSION_DEADLINE, connect)
            .await
            .map_err(|_| {
                anyhow!(
                    "Chromium did not start through chromedriver within {} s",
                    SESSION_DEADLINE.as_secs()
                )
            })?
            .map_err(|e| anyhow!("starting a Chromium session through chromedriver: {e}"))?;
        Ok(client)
    }

    pub async fn stop(&mut self) {
        self.driver.stop(Duration::from_secs(2)).await;
        kill_browsers_using(&self.profiles);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver dies with its ManagedProcess; the browsers it started may not (they
        // can outlive it when it is killed): find them by their profile directory.
        kill_browsers_using(&self.profiles);
    }
}

/// SIGKILL every process whose command line mentions `dir` (our per-lab browser profiles).
fn kill_browsers_using(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: kill(2) on a browser process this lab started.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
}

/// The page the browser is on, as the login driver understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Redirected,
    Username,
    Totp,
    Password,
    MechChoose,
    Passkey,
    Consent,
    AccessDenied,
    LoginFailed(String),
    Error(String),
    Loading,
    /// Chromium's own error page (TLS not trusted, connection refused…).
    BrowserError(String),
    Unknown(String),
}

const DETECT: &str = r#"
const prefix = arguments[0];
if (location.href.startsWith(prefix)) return 'redirected';
if (document.readyState !== 'complete') return 'loading';
const txt = document.body ? document.body.innerText : '';
const neterr = txt.match(/(NET::ERR_[A-Z_]+|ERR_[A-Z_]{6,})/);
if (neterr) return 'browser-error:' + neterr[1];
if (location.protocol === 'chrome-error:') return 'browser-error:';
const vis = id => { const e = document.getElementById(id); return !!(e && e.offsetParent !== null && !e.classList.contains('d-none') && e.type !== 'hidden'); };
const heads = [...document.querySelectorAll('h1,h2,h3')].map(e => e.textContent.trim());
if (heads.includes('Access Denied')) return 'access-denied';
if (heads.includes('Login Failed')) { const r = document.body.innerText.match(/Reason:?\s*(.*)/); return 'login-failed:' + (r ? r[1] : ''); }
if (heads.includes('Error')) { return 'error:' + document.body.innerText.replace(/\s+/g, ' ').slice(0, 200); }
if (document.getElementById('cred-form')) return 'passkey';
if (vis('totp')) return 'totp';
if (vis('password')) return 'password';
if (vis('username')) return 'username';
if (document.querySelector('form[action="/ui/login/mech_choose"]')) return 'mech-choose';
if ([...document.querySelectorAll('button')].some(b => b.textContent.trim() === 'Proceed')) return 'consent';
return 'unknown:' + document.title;
"#;

pub async fn detect(client: &Client, redirect_prefix: &str) -> Result<Page> {
    let v = client
        .execute(DETECT, vec![json!(redirect_prefix)])
        .await
        .map_err(|e| anyhow!("reading the page: {e}"))?;
    let s = v.as_str().unwrap_or("unknown:").to_string();
    Ok(match s.as_str() {
        "redirected" => Page::Redirected,
        "loading" => Page::Loading,
        "username" => Page::Username,
        "totp" => Page::Totp,
        "password" => Page::Password,
        "mech-choose" => Page::MechChoose,
        "passkey" => Page::Passkey,
        "consent" => Page::Consent,
        "access-denied" => Page::AccessDenied,
        other => match other.split_once(':') {
            Some(("login-failed", r)) => Page::LoginFailed(r.to_string()),
            Some(("error", r)) => Page::Error(r.to_string()),
            Some(("browser-error", r)) => Page::BrowserError(r.to_string()),
            _ => Page::Unknown(other.to_string()),
        },
    })
}

/// Fill an input and submit its form in one WebDriver round trip. The browser sends the
/// same POST a person's Enter key would; typing key by key through WebDriver cost
/// 200–400 ms per page here.
const FILL_AND_SUBMIT: &str = r#"
const [id, value] = arguments;
const input = document.getElementById(id);
if (!input) return 'no #' + id;
input.focus();
input.value = value;
input.dispatchEvent(new Event('input', {bubbles: true}));
input.dispatchEvent(new Event('change', {bubbles: true}));
const form = input.form || document.querySelector('form#login');
if (!form) return 'no form around #' + id;
const button = form.querySelector('button[type=submit], input[type=submit]');
form.requestSubmit(button || undefined);
return 'ok';
"#;

pub async fn fill_and_submit(client: &Client, input_id: &str, value: &str) -> Result<()> {
    let r = client
        .execute(FILL_AND_SUBMIT, vec![json!(input_id), json!(value)])
        .await
        .with_context(|| format!("filling #{input_id}"))?;
    match r.as_str() {
        Some("ok") => Ok(()),
        other => bail!("filling #{input_id}: {}", other.unwrap_or("no answer")),
    }
}

const CLICK_BUTTON: &str = r#"
const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === arguments[0]);
if (!b) return false;
b.click();
return true;
"#;

pub async fn click_button_with_text(client: &Client, text: &str) -> Result<()> {
    let r = client
        .execute(CLICK_BUTTON, vec![json!(text)])
        .await
        .with_context(|| format!("clicking `{text}`"))?;
    if r != json!(true) {
        bail!("no button `{text}` on the page");
    }
    Ok(())
}

/// Save screenshot, page HTML and URL trail into `dir`.
pub async fn save_artifacts(client: &Client, dir: &Path, trail: &[String]) {
    let _ = std::fs::create_dir_all(dir);
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join("screenshot.png"), png);
    }
    if let Ok(html) = client.source().await {
        let _ = std::fs::write(dir.join("page.html"), html);
    }
    let _ = std::fs::write(dir.join("url-trail.txt"), trail.join("\n"));
}
