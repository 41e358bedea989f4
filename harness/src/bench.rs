//! Benchmarks that are not a whole e2e run (`cargo xtask bench-login`).

use crate::kanidm::server::{LocalKanidm, check_version, lab_http_client};
use crate::kanidm::{admin, reconcile};
use crate::login::browser::Browser;
use crate::login::flow::{LoginRequest, Person};
use crate::login::signins::SignIns;
use crate::pki;
use crate::run::LabDir;
use crate::scenario::LoadedScenario;
use crate::scenario::model::CredentialKind;
use anyhow::Result;
use std::time::Instant;

/// Per-phase figures of logging every person of `s` in, first through Kanidm's pages, then
/// again by single sign-on (fresh Kanidm, one chromedriver, one shared Chromium).
pub async fn logins(s: &LoadedScenario) -> Result<Vec<String>> {
    let lab = LabDir::create(false)?;
    let mut out = Vec::new();
    let pki = pki::generate_local(&lab.path.join("pki"))?;
    let http = lab_http_client(&pki.ca_pem)?;
    let t = Instant::now();
    let kdir = lab.path.join("kanidm");
    std::fs::create_dir_all(&kdir)?;
    let kanidmd = crate::tools::KANIDMD.require()?;
    let mut server =
        LocalKanidm::start(&kanidmd, &kdir, &pki, &http, crate::process::free_port).await?;
    check_version(server.version.as_deref())?;
    out.push(format!(
        "kanidmd start to /status ready        {:>6.2} s",
        t.elapsed().as_secs_f64()
    ));
    let pw = server.recover_account("idm_admin").await?;
    let kc = admin::admin_client(&server.endpoint, &pw).await?;
    let p = reconcile::provision(&kc, &reconcile::Desired::of(s), &http, &server.endpoint).await?;
    out.push(format!(
        "kanidmd start to scenario state applied {:>6.2} s",
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    let mut browser = Browser::start(&lab.path.join("browser")).await?;
    out.push(format!(
        "chromedriver start (once per run)       {:>6.2} s",
        t.elapsed().as_secs_f64()
    ));
    let issuer = server.endpoint.issuer(&s.scenario.login.client.value);
    let req = LoginRequest {
        issuer: &issuer,
        origin: &server.endpoint.origin,
        client_id: &s.scenario.login.client.value,
        scopes: &s.scenario.login.scopes,
        redirect_port: s.scenario.login.redirect_port,
        redirect_path: s
            .scenario
            .login
            .redirect_path
            .as_deref()
            .unwrap_or("/callback"),
        spki_pin: &pki.kanidm_spki_sha256,
        artifacts: &lab.path.join("artifacts"),
    };
    // As an e2e run does it: every person's first login walks Kanidm's pages, then each
    // logs in again from their restored Kanidm session.
    let mut signins = SignIns::default();
    for round in ["first login", "single sign-on"] {
        for person in &s.scenario.kanidm.persons {
            let name = &person.name.value;
            let t = Instant::now();
            let (outcome, _) = signins
                .login(
                    &browser,
                    &http,
                    &req,
                    &Person {
                        name,
                        secrets: &p.secrets[name],
                        passkey: person.credential == CredentialKind::Passkey,
                    },
                )
                .await?;
            out.push(format!(
                "{round:<15} {name:<10} {:<14} {:>6.2} s",
                outcome.label(),
                t.elapsed().as_secs_f64()
            ));
        }
    }
    signins.close().await;
    browser.stop().await;
    server.stop().await;
    Ok(out)
}

/// What a run cost, for `cargo xtask bench`: wall time, CPU time and peak resident memory of
/// the harness and, together, of the processes it started and reaped (etcd, kube-apiserver,
/// kube-controller-manager, kanidmd, chromedriver and its Chromium, kubectl), and the
/// concurrency it ran with.
pub fn resources(
    wall: std::time::Duration,
    before_run: std::time::Duration,
    concurrency: usize,
    cells_at_once: usize,
) -> String {
    let usage = |who: libc::c_int| {
        // SAFETY: getrusage writes only into the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::getrusage(who, &mut u) } == 0;
        ok.then_some(u)
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cells = match cells_at_once {
        0 | 1 => "cells one at a time".to_string(),
        n => format!("{n} cells at a time"),
    };
    let mut out = format!(
        "  wall time                           {:>7.1} s\n  of it before the first lab          {:>7.1} s (scenarios read, tools found)\n  concurrency                         {concurrency:>7} ({})\n",
        wall.as_secs_f64(),
        before_run.as_secs_f64(),
        if concurrency <= 1 {
            format!("scenarios one at a time; {cells}")
        } else {
            format!("workers per cell, each its own lab; {cells}")
        }
    );
    let parts = crate::process::usage::snapshot();
    for (name, who) in [
        ("harness", libc::RUSAGE_SELF),
        ("components (all children)", libc::RUSAGE_CHILDREN),
    ] {
        if let Some(u) = usage(who) {
            out.push_str(&format!(
                "  {name:<26} CPU {:>7.1} s (user {:.1} s, system {:.1} s), peak RSS {:>7.1} MB{}\n",
                secs(u.ru_utime) + secs(u.ru_stime),
                secs(u.ru_utime),
                secs(u.ru_stime),
                u.ru_maxrss as f64 / 1024.0,
                if who == libc::RUSAGE_CHILDREN {
                    " (the largest one)"
                } else {
                    ""
                }
            ));
        }
    }
    if !parts.is_empty() {
        out.push_str("  by component (each with the processes it started, read before it was stopped; kubectl and kubelogin runs are the rest):\n");
        for (name, u) in &parts {
            out.push_str(&format!(
                "    {:<24} CPU {:>7.1} s over {} process(es), peak RSS {:>7.1} MB (the largest one)\n",
                name,
                u.cpu_secs,
                u.processes,
                u.peak_rss_bytes as f64 / (1u64 << 20) as f64
            ));
        }
    }
    out
}
