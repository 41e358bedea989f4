//! `login.via: kubelogin` in a run: a person's login is kubelogin's `get-token` (after
//! post 2's `oidc-login setup` where the scenario says so), a refresh is `get-token
//! --force-refresh` on a copy of the person's cache. The browser is the run's, holding the
//! person's Kanidm session like any other login.

use super::kanidm_lab::{KanidmLab, KanidmSite};
use crate::login::flow::{LoginOutcomeActual, Person};
use crate::login::kubelogin::{self, BrowserSide, KubeloginCred, Run, args};
use crate::login::redirect_ports;
use crate::login::signins::Kind;
use crate::scenario::LoadedScenario;
use crate::scenario::model::ExecBlock;
use crate::scenario::placeholder;
use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest;
use std::path::Path;
use std::sync::Arc;

/// The exec block a person's kubeconfig holds, before a cache directory is chosen.
struct Template {
    user: String,
    api_version: String,
    command: String,
    args: Vec<String>,
    interactive_mode: Option<String>,
    /// How it came about (post 2: what `setup` printed).
    origin: String,
}

/// A cache directory name for a Kanidm state (+ step) fingerprint.
fn cache_key(fingerprint: &str) -> String {
    let h = sha2::Sha256::digest(fingerprint.as_bytes());
    h.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn empty_dir(d: &Path) -> Result<()> {
    for e in std::fs::read_dir(d).with_context(|| format!("reading {}", d.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

fn resolve_all(words: &[String], values: &placeholder::Values) -> Result<Vec<String>> {
    words
        .iter()
        .map(|w| placeholder::resolve(w, values).map_err(|e| anyhow!("kubelogin arguments: {e}")))
        .collect()
}

fn exec_info(api_version: &str) -> String {
    serde_json::json!({"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": false}})
        .to_string()
}

fn stderr_tail(run: &Run) -> String {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    crate::input_file::printable(&tail)
        .chars()
        .take(400)
        .collect()
}

/// The person's credentials and the run's browser holding their Kanidm session.
async fn person_browser(
    k: &mut KanidmLab,
    site: &KanidmSite<'_>,
    person: &str,
) -> Result<(crate::kanidm::PersonSecrets, fantoccini::Client, Kind)> {
    let secrets = k
        .provisioned
        .secrets
        .get(person)
        .ok_or_else(|| anyhow!("no credentials for {person}"))?
        .clone();
    let (client, kind) = k
        .signins
        .browser_for(&site.lab.browser, &site.lab.pki.kanidm_spki_sha256, person)
        .await?;
    Ok((secrets, client, kind))
}

/// Log `person` in through kubelogin: a fresh cache for the current Kanidm state, then the
/// exec block's `get-token` with the run's browser.
pub(super) async fn login(
    s: &LoadedScenario,
    k: &mut KanidmLab,
    site: &KanidmSite<'_>,
    art_dir: &Path,
    person: &str,
) -> Result<(LoginOutcomeActual, Kind)> {
    let kl = site.kubelogin.as_ref().ok_or_else(|| {
        anyhow!("this scenario logs in through kubelogin, but the run prepared none")
    })?;
    let lab = site.lab;
    let login = &s.scenario.login;
    let cfg = login
        .kubelogin
        .as_ref()
        .ok_or_else(|| anyhow!("`via: kubelogin` without `kubelogin:`"))?;
    let (secrets, client, kind) = person_browser(k, site, person).await?;
    let who = Person {
        name: person,
        secrets: &secrets,
        passkey: false,
    };
    let side = || BrowserSide {
        client: &client,
        person: &who,
        artifacts: art_dir,
    };
    let values = k.provisioned.placeholder_values(k.server.endpoint());
    let additions = kl.additions(&lab.pki.ca_cert, None).args();
    // kubelogin listens on 8000/18000 for the browser's redirect (setup's login too).
    let ports = redirect_ports::take(&format!("{person}'s kubelogin login")).await?;
    let template = match (&cfg.exec, &cfg.setup) {
        (Some(e), _) => from_exec(&e.value, person, &values, &additions)?,
        (None, Some(flags)) => {
            let flags: Vec<String> = flags.value.iter().map(|f| f.value.clone()).collect();
            match setup(
                kl,
                &resolve_all(&flags, &values)?,
                &additions,
                person,
                side(),
            )
            .await?
            {
                Ok(t) => t,
                Err(terminal) => return Ok((terminal, kind)),
            }
        }
        (None, None) => bail!("`kubelogin:` has neither `exec` nor `setup`"),
    };
    let cache = kl.cache_dir(&cache_key(&k.fingerprint), person)?;
    empty_dir(&cache)?;
    let argv = args::with_cache_dir(&template.args, &cache.display().to_string());
    let run = kubelogin::run(
        kl,
        &template.command,
        &argv,
        Some(&exec_info(&template.api_version)),
        Some(side()),
    )
    .await
    .with_context(|| format!("{person}'s kubelogin get-token"))?;
    drop(ports);
    let issuer = k.server.endpoint().issuer(&login.client.value);
    let out = outcome(
        kl,
        &lab.http,
        &issuer,
        &login.client.value,
        &template,
        argv,
        &cache,
        run,
        "login",
    )
    .await?;
    Ok((out, kind))
}

/// `get-token --force-refresh` on a copy of `from`'s cache, `n` at once (one: with the
/// browser, should kubelogin fall back to it; several: the browser counts as a failure).
pub(super) async fn refresh(
    s: &LoadedScenario,
    k: &mut KanidmLab,
    site: &KanidmSite<'_>,
    art_dir: &Path,
    person: &str,
    from: &KubeloginCred,
    n: u8,
) -> Result<Vec<LoginOutcomeActual>> {
    let kl = site.kubelogin.as_ref().ok_or_else(|| {
        anyhow!("this scenario refreshes through kubelogin, but the run prepared none")
    })?;
    let lab = site.lab;
    let login = &s.scenario.login;
    let cache = kl.cache_dir(&cache_key(&k.fingerprint), person)?;
    empty_dir(&cache)?;
    kubelogin::copy_cache(&from.cache_dir, &cache)?;
    let kube_args = args::with_cache_dir(&from.args, &cache.display().to_string());
    let mut argv = kube_args.clone();
    argv.push("--force-refresh".into());
    let template = Template {
        user: from.user.clone(),
        api_version: from.api_version.clone(),
        command: from.command.clone(),
        args: from.args.clone(),
        interactive_mode: from.interactive_mode.clone(),
        origin: String::new(),
    };
    let issuer = k.server.endpoint().issuer(&login.client.value);
    let info = exec_info(&template.api_version);
    let runs: Vec<Result<Run>> = if n <= 1 {
        // Should the refresh fail, kubelogin falls back to its browser login on 8000/18000.
        let _ports = redirect_ports::take(&format!("{person}'s kubelogin refresh")).await?;
        let (secrets, client, _) = person_browser(k, site, person).await?;
        let who = Person {
            name: person,
            secrets: &secrets,
            passkey: false,
        };
        let side = BrowserSide {
            client: &client,
            person: &who,
            artifacts: art_dir,
        };
        vec![kubelogin::run(kl, &template.command, &argv, Some(&info), Some(side)).await]
    } else {
        // Each on its own task, all at once; no browser for any of them.
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (kl, cmd, argv, info) = (
                    kl.clone(),
                    template.command.clone(),
                    argv.clone(),
                    info.clone(),
                );
                tokio::spawn(
                    async move { kubelogin::run(&kl, &cmd, &argv, Some(&info), None).await },
                )
            })
            .collect();
        let mut runs = Vec::new();
        for h in handles {
            runs.push(
                h.await
                    .map_err(|e| anyhow!("a concurrent refresh task: {e}"))
                    .and_then(|r| r),
            );
        }
        runs
    };
    let mut outs = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        let what = if n > 1 {
            format!("refresh {}/{n} at once", i + 1)
        } else {
            "refresh".into()
        };
        let out = match r {
            Ok(run) => {
                outcome(
                    kl,
                    &lab.http,
                    &issuer,
                    &login.client.value,
                    &template,
                    kube_args.clone(),
                    &cache,
                    run,
                    &what,
                )
                .await?
            }
            Err(e) => LoginOutcomeActual::Error(format!("{what}: {e:#}")),
        };
        outs.push(out);
    }
    Ok(outs)
}

/// Post 1: the exec block as written, placeholders resolved, the lab's CA and browser added.
fn from_exec(
    b: &ExecBlock,
    person: &str,
    values: &placeholder::Values,
    additions: &[String],
) -> Result<Template> {
    let written: Vec<String> = b.args.iter().map(|a| a.value.clone()).collect();
    let mut args = resolve_all(&written, values)?;
    args.extend(additions.iter().cloned());
    Ok(Template {
        user: person.to_string(),
        api_version: b.api_version.clone(),
        command: b.command.clone(),
        args,
        interactive_mode: b.interactive_mode.clone(),
        origin: "the scenario's exec block".into(),
    })
}

/// Post 2: `kubectl oidc-login setup <flags>` logs the person in and prints a `kubectl
/// config set-credentials` command; the lab runs that command for real and reads the exec
/// block back from the kubeconfig it wrote. Err: the login ended on a Kanidm page.
async fn setup(
    kl: &kubelogin::Kubelogin,
    flags: &[String],
    additions: &[String],
    person: &str,
    side: BrowserSide<'_>,
) -> Result<Result<Template, LoginOutcomeActual>> {
    let mut argv = vec!["oidc-login".to_string(), "setup".to_string()];
    argv.extend(flags.iter().cloned());
    argv.extend(additions.iter().cloned());
    let run = kubelogin::run(kl, "kubectl", &argv, None, Some(side))
        .await
        .with_context(|| format!("{person}'s `kubectl oidc-login setup`"))?;
    if let Some((_, Some(terminal))) = run.browser {
        return Ok(Err(terminal));
    }
    if !run.success {
        bail!("`kubectl oidc-login setup` failed: {}", stderr_tail(&run));
    }
    let printed = format!("{}\n{}", run.stdout, run.stderr);
    let set = args::set_credentials_from_setup(&printed).map_err(|e| anyhow!("{e}"))?;
    let user = set
        .get(2)
        .cloned()
        .ok_or_else(|| anyhow!("set-credentials names no user"))?;
    let kubeconfig = kl.scratch(&format!("{person}.setup.kubeconfig"));
    let _ = std::fs::remove_file(&kubeconfig);
    let mut cmd = tokio::process::Command::new(kl.path_dir.join("kubectl"));
    cmd.args(&set)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .kill_on_drop(true);
    crate::process::die_with_parent(cmd.as_std_mut());
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| anyhow!("`kubectl config set-credentials` did not finish within 30 s"))?
        .context("running kubectl config set-credentials")?;
    if !out.status.success() {
        bail!(
            "`kubectl config set-credentials` (as setup printed it) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text =
        crate::input_file::read_text(&kubeconfig, 1 << 20, "the kubeconfig setup's command wrote")?;
    let doc: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| anyhow!("the kubeconfig setup's command wrote: {e}"))?;
    let exec = doc["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == user.as_str()))
        .map(|u| &u["user"]["exec"])
        .filter(|e| e.is_object())
        .ok_or_else(|| anyhow!("the kubeconfig has no exec block for user `{user}`"))?;
    let s = |k: &str| exec[k].as_str().map(str::to_string);
    Ok(Ok(Template {
        user: user.clone(),
        api_version: s("apiVersion")
            .ok_or_else(|| anyhow!("setup's exec block has no apiVersion"))?,
        command: s("command").ok_or_else(|| anyhow!("setup's exec block has no command"))?,
        args: exec["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        interactive_mode: s("interactiveMode"),
        origin: format!(
            "`oidc-login setup` printed `kubectl config set-credentials {user} …` ({} flags), run as printed",
            set.len().saturating_sub(3)
        ),
    }))
}

/// What a kubelogin run gave: a verified token (with its exec block and cache), Kanidm's
/// own refusal page, or kubelogin's error.
#[allow(clippy::too_many_arguments)]
async fn outcome(
    kl: &kubelogin::Kubelogin,
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    t: &Template,
    argv: Vec<String>,
    cache: &Path,
    run: Run,
    what: &str,
) -> Result<LoginOutcomeActual> {
    let browser = run.browser.is_some();
    if let Some((_, Some(terminal))) = &run.browser {
        return Ok(terminal.clone());
    }
    if !run.success {
        return Ok(LoginOutcomeActual::Error(format!(
            "kubelogin {what} failed: {}",
            stderr_tail(&run)
        )));
    }
    let token = kubelogin::token_of(&run.stdout)?;
    let mut v = crate::login::oidc::verify_from_issuer(http, issuer, client_id, &token)
        .await
        .with_context(|| format!("verifying the id_token kubelogin's {what} gave"))?;
    let how = match &run.browser {
        Some((seen, _)) => format!(
            "{what} through the browser ({})",
            seen.as_ref()
                .map(|s| s.summary())
                .unwrap_or_else(|| "authorize request not seen".into())
        ),
        None => format!("{what} without the browser"),
    };
    let note = format!(
        "{how}, {:.2} s; cache {}; exec block from {}, lab added --certificate-authority, --browser-command, --token-cache-dir",
        run.elapsed.as_secs_f64(),
        kubelogin::cache_contents(cache).join(", "),
        if t.origin.is_empty() {
            "the token refreshed"
        } else {
            &t.origin
        },
    );
    v.kubelogin = Some(Arc::new(KubeloginCred {
        user: t.user.clone(),
        api_version: t.api_version.clone(),
        command: t.command.clone(),
        args: argv,
        interactive_mode: t.interactive_mode.clone(),
        cache_dir: cache.to_path_buf(),
        exec_path: kl.path_env(),
        browser,
        note,
    }));
    Ok(LoginOutcomeActual::Token(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_differ_per_state_and_name_a_directory() {
        let a = cache_key("{fp}");
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, cache_key("{fp}#step"));
    }
}
