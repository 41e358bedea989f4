//! kubelogin (int128/kubelogin, `kubectl oidc-login`) as a real component of the lab.
//!
//! The lab runs the exec block a person's kubeconfig holds, exactly as kubectl would: the
//! command on a PATH where `kubectl` is the lab's kubectl and `kubectl-oidc_login` is the
//! kubelogin found at run time. kubelogin opens the authorize URL with `--browser-command`;
//! the lab's command only writes that URL into a hand-off file, and the run's WebDriver
//! browser logs the person in through Kanidm's pages. kubelogin receives the redirect on
//! its own listener, exchanges the code, caches the tokens and prints the ExecCredential.

pub use super::exec_block::KubeloginCred;
pub use crate::scenario::kubelogin as args;

use super::flow::{LoginOutcomeActual, Person, drive_to_redirect};
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A kubelogin run (login pages included) never takes longer than this.
const RUN_DEADLINE: Duration = Duration::from_secs(150);
/// After the browser reached kubelogin's redirect: the code exchange and the cache write.
const AFTER_REDIRECT: Duration = Duration::from_secs(30);

/// The lab's kubelogin: the binary, the PATH directory exec blocks run with, the browser
/// hand-off.
#[derive(Debug, Clone)]
pub struct Kubelogin {
    pub bin: PathBuf,
    /// `kubectl-oidc_login --version`, e.g. `v1.36.3`.
    pub version: String,
    /// Holds `kubectl` (the lab's) and `kubectl-oidc_login`; first on PATH for every
    /// kubectl run through an exec block.
    pub path_dir: PathBuf,
    /// What `--browser-command` names.
    pub browser_command: PathBuf,
    /// Where the browser command writes the URL (`url`).
    handoff: PathBuf,
    /// Per-person token caches live under here.
    caches: PathBuf,
}

/// The version kubelogin prints (`kubelogin version v1.36.3`).
pub async fn version_of(bin: &Path) -> Result<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(bin)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow!("`{} --version` did not answer within 10 s", bin.display()))?
    .with_context(|| format!("running {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} --version printed no version: {text}", bin.display()))
}

fn symlink_fresh(target: &Path, link: &Path) -> Result<()> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

impl Kubelogin {
    /// Lay out `<lab>/kubelogin/`: `bin/` (kubectl, kubectl-oidc_login), the browser
    /// command, the hand-off directory and the caches. Everything 0700: caches hold tokens.
    pub async fn prepare(lab_dir: &Path, bin: &Path, kubectl: &Path) -> Result<Kubelogin> {
        use std::os::unix::fs::PermissionsExt;
        let version = version_of(bin).await?;
        let root = lab_dir.join("kubelogin");
        let path_dir = root.join("bin");
        let handoff = root.join("handoff");
        let caches = root.join("cache");
        for d in [&root, &path_dir, &handoff, &caches] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        }
        let bin = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.to_path_buf());
        let kubectl = std::fs::canonicalize(kubectl).unwrap_or_else(|_| kubectl.to_path_buf());
        symlink_fresh(&bin, &path_dir.join(args::PLUGIN_BINARY))?;
        symlink_fresh(&kubectl, &path_dir.join("kubectl"))?;
        let browser_command = root.join("open-in-lab-browser");
        let url = handoff.join("url");
        // kubelogin runs `<command> <url>` (no shell) and waits for it: write the URL
        // where the harness looks, atomically, and return at once.
        if handoff.to_string_lossy().contains('\'') {
            bail!(
                "the lab directory's path contains a quote; kubelogin's browser command cannot name it safely"
            );
        }
        let script = format!(
            "#!/bin/sh\n# kanidm-k8s-lab: the --browser-command given to kubelogin. Hands the authorize URL to the lab's headless browser.\numask 077\nprintf '%s\\n' \"$1\" > '{tmp}' && mv '{tmp}' '{url}'\n",
            tmp = handoff.join("url.partial").display(),
            url = url.display(),
        );
        std::fs::write(&browser_command, script)?;
        std::fs::set_permissions(&browser_command, std::fs::Permissions::from_mode(0o700))?;
        Ok(Kubelogin {
            bin,
            version,
            path_dir,
            browser_command,
            handoff,
            caches,
        })
    }

    /// A token cache directory (0700), one per person and point of a scenario.
    pub fn cache_dir(&self, key: &str, person: &str) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let d = self.caches.join(key).join(person);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        Ok(d)
    }

    /// A file in the lab's kubelogin directory (a kubeconfig `setup`'s command writes).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.handoff.with_file_name(name)
    }

    /// PATH for kubectl and kubelogin runs: the lab's directory first.
    pub fn path_env(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_default();
        format!("{}:{rest}", self.path_dir.display())
    }

    /// What the lab adds to kubelogin's command line.
    pub fn additions(&self, ca_file: &Path, cache: Option<&Path>) -> args::LabAdditions {
        args::LabAdditions {
            ca_file: ca_file.display().to_string(),
            browser_command: self.browser_command.display().to_string(),
            token_cache_dir: cache.map(|c| c.display().to_string()),
        }
    }
}

/// The authorize request kubelogin sent Kanidm (read from its listener's redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeSeen {
    pub scope: String,
    pub code_challenge_method: Option<String>,
    pub access_type: Option<String>,
    pub redirect_uri: String,
}

impl AuthorizeSeen {
    pub fn of(url: &url::Url) -> AuthorizeSeen {
        let q = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        AuthorizeSeen {
            scope: q("scope").unwrap_or_default(),
            code_challenge_method: q("code_challenge_method"),
            access_type: q("access_type"),
            redirect_uri: q("redirect_uri").unwrap_or_default(),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "scope=`{}`, PKCE {}, access_type={}",
            self.scope,
            self.code_challenge_method.as_deref().unwrap_or("none"),
            self.access_type.as_deref().unwrap_or("(not sent)")
        )
    }
}

/// One kubelogin run.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// The browser was opened: what kubelogin asked Kanidm for, and where the pages ended
    /// (None: at kubelogin's redirect, as a login should).
    pub browser: Option<(Option<AuthorizeSeen>, Option<LoginOutcomeActual>)>,
    pub elapsed: Duration,
}

/// The browser the run may drive if kubelogin opens it.
pub struct BrowserSide<'a> {
    pub client: &'a fantoccini::Client,
    pub person: &'a Person<'a>,
    pub artifacts: &'a Path,
}

/// Read kubelogin's listener redirect (without following it): the authorize URL.
pub async fn authorize_request(listener_url: &str) -> Option<AuthorizeSeen> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let resp = client.get(listener_url).send().await.ok()?;
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    url::Url::parse(loc).ok().map(|u| AuthorizeSeen::of(&u))
}

/// Where kubelogin's listener receives the code: the redirect URI, with `?` so kubelogin's
/// own start page (the same origin, no query) does not count as the redirect.
pub fn redirect_prefix(seen: Option<&AuthorizeSeen>, listener_url: &str) -> String {
    let base = seen
        .map(|s| s.redirect_uri.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| listener_url.to_string());
    // As the browser shows it: `http://localhost:8000` is at `http://localhost:8000/`.
    let base = url::Url::parse(&base)
        .map(|u| u.to_string())
        .unwrap_or(base);
    if base.contains('?') {
        base
    } else {
        format!("{base}?")
    }
}

/// Run `program args…` (an exec block's command, or `setup`) as kubectl would, with the
/// lab's PATH and `KUBERNETES_EXEC_INFO`; if kubelogin opens the browser, drive `browser`
/// through Kanidm's pages (without one, a browser request fails the run).
pub async fn run(
    k: &Kubelogin,
    program: &str,
    argv: &[String],
    exec_info: Option<&str>,
    browser: Option<BrowserSide<'_>>,
) -> Result<Run> {
    let url_file = k.handoff.join("url");
    let _ = std::fs::remove_file(&url_file);
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(argv)
        .env("PATH", k.path_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(info) = exec_info {
        cmd.env("KUBERNETES_EXEC_INFO", info);
    }
    cmd.process_group(0);
    crate::process::die_with_parent(cmd.as_std_mut());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting `{program}` (kubelogin) on the lab's PATH"))?;
    let pgid = child.id();
    let kill_group = || {
        if let Some(p) = pgid {
            // SAFETY: kill(2) on the process group this child leads (process_group(0)).
            unsafe {
                libc::kill(-(p as i32), libc::SIGKILL);
            }
        }
    };
    let mut output = Box::pin(child.wait_with_output());
    let deadline = tokio::time::Instant::now() + RUN_DEADLINE;
    let mut browser_seen = None;
    // Until kubelogin exits or asks for the browser.
    let done = loop {
        tokio::select! {
            out = &mut output => break Some(out.context("waiting for kubelogin")?),
            _ = tokio::time::sleep(Duration::from_millis(25)) => {}
        }
        if tokio::time::Instant::now() > deadline {
            kill_group();
            bail!(
                "kubelogin did not finish within {} s",
                RUN_DEADLINE.as_secs()
            );
        }
        if let Ok(text) = std::fs::read_to_string(&url_file) {
            let _ = std::fs::remove_file(&url_file);
            browser_seen = Some(text.trim().to_string());
            break None;
        }
    };
    let out = match (done, browser_seen) {
        (Some(out), _) => {
            return Ok(Run {
                success: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                browser: None,
                elapsed: started.elapsed(),
            });
        }
        (None, Some(listener_url)) => {
            let Some(side) = browser else {
                kill_group();
                bail!(
                    "kubelogin opened the browser ({listener_url}) where the lab expected it to answer from its cache or a refresh"
                );
            };
            let seen = authorize_request(&listener_url).await;
            let prefix = redirect_prefix(seen.as_ref(), &listener_url);
            let url = url::Url::parse(&listener_url)
                .with_context(|| format!("kubelogin's browser URL `{listener_url}`"))?;
            let ended =
                drive_to_redirect(side.client, &url, &prefix, side.person, side.artifacts).await;
            match ended {
                Ok(None) => {}
                Ok(Some(terminal)) => {
                    // Kanidm ended the login on its own page: kubelogin waits in vain.
                    kill_group();
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut output).await;
                    return Ok(Run {
                        success: false,
                        stdout: String::new(),
                        stderr: String::new(),
                        browser: Some((seen, Some(terminal))),
                        elapsed: started.elapsed(),
                    });
                }
                Err(e) => {
                    kill_group();
                    return Err(e);
                }
            }
            let out = match tokio::time::timeout(AFTER_REDIRECT, &mut output).await {
                Ok(out) => out.context("waiting for kubelogin")?,
                Err(_) => {
                    kill_group();
                    bail!(
                        "kubelogin received the redirect but did not finish within {} s",
                        AFTER_REDIRECT.as_secs()
                    );
                }
            };
            (out, seen)
        }
        (None, None) => bail!("kubelogin: neither an exit nor a browser"),
    };
    let (out, seen) = out;
    Ok(Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        browser: Some((seen, None)),
        elapsed: started.elapsed(),
    })
}

/// The token in kubelogin's ExecCredential (stdout of `get-token`).
pub fn token_of(stdout: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| anyhow!("kubelogin's output is not an ExecCredential: {e}"))?;
    if v["kind"] != "ExecCredential" {
        bail!(
            "kubelogin printed a {} instead of an ExecCredential",
            v["kind"]
        );
    }
    v["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("kubelogin's ExecCredential has no status.token"))
}

/// What kubelogin keeps in a cache directory, without the secrets: each file, its mode,
/// and which tokens a cache entry holds.
pub fn cache_contents(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec!["(no cache directory)".into()];
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mode = e
                .metadata()
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            let keys = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    v.as_object().map(|o| {
                        o.iter()
                            .filter(|(_, v)| v.as_str().is_some_and(|s| !s.is_empty()))
                            .map(|(k, _)| k.clone())
                            .collect::<Vec<_>>()
                            .join("+")
                    })
                })
                .unwrap_or_default();
            // kubelogin names an entry by a SHA-256 of its settings: shorten the hash only.
            let short = match name.split_once('.') {
                Some((h, ext)) if h.len() > 12 => format!("{}….{ext}", &h[..12]),
                None if name.len() > 12 => format!("{}…", &name[..12]),
                _ => name,
            };
            if keys.is_empty() {
                format!("{short} ({mode:o})")
            } else {
                format!("{short} ({mode:o}): {keys}")
            }
        })
        .collect();
    out.sort();
    out
}

/// Copy a person's cache to a new point (a refresh or a kept token works on its own copy).
pub fn copy_cache(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            let dst = to.join(e.file_name());
            std::fs::copy(e.path(), &dst)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Whether a run's stderr says a refresh failed before kubelogin fell back to the browser.
pub fn refresh_failed_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.contains("refresh") && (l.contains("error") || l.contains("fail")))
        .map(|l| crate::input_file::printable(l).chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_request_is_read_from_kubelogins_redirect() {
        let u = url::Url::parse("https://localhost:8443/ui/oauth2?access_type=offline&client_id=k8s&code_challenge=abc&code_challenge_method=S256&nonce=n&redirect_uri=http%3A%2F%2Flocalhost%3A8000&response_type=code&scope=openid+profile+groups+email+openid&state=s").unwrap();
        let s = AuthorizeSeen::of(&u);
        assert_eq!(s.scope, "openid profile groups email openid");
        assert_eq!(s.code_challenge_method.as_deref(), Some("S256"));
        assert_eq!(s.access_type.as_deref(), Some("offline"));
        assert_eq!(
            redirect_prefix(Some(&s), "http://localhost:8000/"),
            "http://localhost:8000/?"
        );
        assert_eq!(
            redirect_prefix(None, "http://localhost:8000/"),
            "http://localhost:8000/?"
        );
    }

    #[test]
    fn an_exec_credential_gives_its_token_and_nothing_else_does() {
        let ok = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false},"status":{"expirationTimestamp":"2026-12-07T00:15:00Z","token":"a.b.c"}}"#;
        assert_eq!(token_of(ok).unwrap(), "a.b.c");
        for bad in [
            "",
            "null",
            r#"{"kind":"Config"}"#,
            r#"{"kind":"ExecCredential","status":{}}"#,
        ] {
            assert!(token_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cache_listing_names_tokens_never_their_values() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("0123456789abcdef0123"),
            r#"{"id_token":"secret-id","refresh_token":"secret-rt"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("0123456789abcdef0123.lock"), "").unwrap();
        let listing = cache_contents(d.path()).join("; ");
        assert!(listing.contains("id_token+refresh_token"), "{listing}");
        assert!(!listing.contains("secret"), "{listing}");
        assert!(listing.contains(".lock"), "{listing}");
    }
}
