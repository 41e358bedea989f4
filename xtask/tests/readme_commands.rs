//! Every `cargo xtask explain`/`verify` command line the README prints is run as printed
//! (in a folder holding the files it names, `$HOME` pointing at a home with a kubeconfig):
//! its flags must parse together, and it must get as far as judging its inputs. The
//! README's homelab commands once stopped at clap with "cannot be used with".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The README's command lines for `explain` and `verify`, continuation lines joined: those
/// in ```sh blocks and those after `$ ` in output blocks. Synopsis lines (with `<…>`,
/// `[…]` or `(a | b)`) are not commands.
fn readme_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in readme.lines() {
        let l = line.trim();
        let l = l.strip_prefix("$ ").unwrap_or(l);
        if pending.is_empty()
            && !l.starts_with("cargo xtask explain")
            && !l.starts_with("cargo xtask verify")
        {
            continue;
        }
        pending.push_str(l.trim_end_matches('\\').trim());
        pending.push(' ');
        if !l.ends_with('\\') {
            let cmd = pending.trim().to_string();
            pending.clear();
            let synopsis = cmd.contains('<') || cmd.contains(" [") || cmd.contains(" (");
            if !synopsis {
                out.push(cmd);
            }
        }
    }
    out
}

fn token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://localhost:34561/oauth2/openid/k8s", "aud": "k8s", "sub": "u-1",
        "exp": now + 600, "iat": now, "nbf": now, "preferred_username": "alice@localhost",
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

/// Every file a README command names, with content of the right kind, under `dir`.
fn fixtures(dir: &Path, home: &Path) {
    let auth = "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\njwt:\n  - issuer: {url: \"https://localhost:34561/oauth2/openid/k8s\", audiences: [k8s]}\n    claimMappings:\n      username: {claim: preferred_username, prefix: \"\"}\n      groups: {claim: groups, prefix: \"\"}\n";
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {{server: \"https://127.0.0.1:9\"}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: oauth}}\nusers:\n- name: oauth\n  user: {{token: \"{}\"}}\n",
        token()
    );
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    std::fs::write(home.join(".kube/config"), &kubeconfig).unwrap();
    std::fs::write(dir.join("auth-config.yaml"), auth).unwrap();
    let cred = serde_json::json!({"kind": "ExecCredential", "status": {"token": token()}});
    std::fs::write(dir.join("datosh.cred.json"), cred.to_string()).unwrap();
}

#[test]
fn the_readmes_explain_and_verify_commands_run_as_printed() {
    let cmds = readme_commands();
    assert!(
        cmds.iter()
            .any(|c| c.contains("--auth-config auth-config.yaml --k8s 1.33")),
        "the homelab command is in the README: {cmds:#?}"
    );
    assert!(cmds.len() >= 4, "{cmds:#?}");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    fixtures(dir.path(), &home);
    for cmd in cmds {
        // The README's paths of a `lab up` lab become the fixtures here.
        let line = cmd
            .replace("/work/main/.lab/lab/pki/ca.pem", "auth-config.yaml")
            .replace(
                "/work/main/.lab/lab/apiserver-authentication-config.yaml",
                "auth-config.yaml",
            )
            .replace("/work/main/.lab/lab/", "home/.kube/")
            .replace("alice.kubeconfig", "config")
            .replace("bob.kubeconfig", "config")
            .replace("datosh.kubeconfig", "config")
            .replace("$HOME", &home.to_string_lossy())
            .replace("/tmp/auth-config.yaml", "auth-config.yaml");
        let words = shlex::split(&line).unwrap();
        assert_eq!(&words[..2], ["cargo", "xtask"], "{cmd}");
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&words[2..])
            .current_dir(dir.path())
            .env("HOME", &home)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stderr.contains("cannot be used with") && !stderr.contains("Usage:"),
            "`{cmd}`: the flags as printed do not parse:\n{stderr}"
        );
        // It judged its inputs: explain prints its checks, verify its table or what it
        // could not check.
        let judged = stdout.contains("authenticator")
            || stdout.contains("checks,")
            || stdout.contains("not checked")
            || stderr.contains("error:");
        assert!(
            judged,
            "`{cmd}` printed nothing of its work:\n{stdout}\n{stderr}"
        );
        assert!(
            matches!(out.status.code(), Some(0..=2)),
            "`{cmd}` exited {:?}\n{stderr}",
            out.status
        );
    }
}

/// Every `cargo xtask scenarios import` line the README prints runs as printed (from a folder
/// where the repository's `harness/` is at hand): exit 0, the scenario written where `-o`
/// says, and the lab loads it.
#[test]
fn the_readmes_import_commands_run_as_printed() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let cmds: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo xtask scenarios import ") && !l.contains('<'))
        .collect();
    assert!(cmds.len() >= 2, "{cmds:#?}");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../harness"),
        dir.path().join("harness"),
    )
    .unwrap();
    for cmd in cmds {
        let words = shlex::split(cmd).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&words[2..])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "`{cmd}` exited {:?}\n{stderr}",
            out.status
        );
        let o = words
            .iter()
            .position(|w| w == "-o")
            .map(|i| words[i + 1].clone())
            .unwrap();
        let written = dir.path().join(&o);
        let s = harness::scenario::load_file(&written)
            .unwrap_or_else(|e| panic!("`{cmd}` wrote a scenario the lab does not load: {e}"));
        assert!(stderr.contains(&format!("wrote {o}")), "{stderr}");
        assert!(!s.scenario.expect.is_empty());
    }
}

/// Every `cargo xtask …` command line the README prints (in code blocks or after `$ `,
/// comments dropped, continuations joined; synopsis lines excluded) is accepted by the CLI
/// as printed: its subcommand exists and every flag and value parses (checked with `--help`
/// appended, which clap answers only after parsing what comes before it). The lines that
/// need real servers are run as printed by the tests of those commands; this keeps the rest
/// from drifting from the CLI.
#[test]
fn every_xtask_line_the_readme_prints_parses() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let mut cmds = Vec::new();
    let mut pending = String::new();
    let mut in_code = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let l = line.trim();
        let l = l.strip_prefix("$ ").unwrap_or(l);
        if pending.is_empty() && !(in_code && l.starts_with("cargo xtask ")) {
            continue;
        }
        // A trailing `# comment` is not part of the command.
        let l = match l.find("  #").or_else(|| l.find(" # ")) {
            Some(i) => l[..i].trim_end(),
            None => l,
        };
        pending.push_str(l.trim_end_matches('\\').trim());
        pending.push(' ');
        if !l.ends_with('\\') {
            let cmd = pending.trim().to_string();
            pending.clear();
            let synopsis = cmd.contains('<')
                || cmd.contains(" [")
                || cmd.contains(" (")
                || cmd.contains('…')
                || cmd.contains('|');
            if !synopsis {
                cmds.push(cmd);
            }
        }
    }
    assert!(cmds.len() >= 10, "the README's commands: {cmds:#?}");
    assert!(
        cmds.iter()
            .any(|c| c.contains("--backend kind") && c.contains("--jobs")),
        "{cmds:#?}"
    );
    let mut bad = Vec::new();
    for cmd in &cmds {
        let words = shlex::split(cmd).unwrap_or_else(|| panic!("unbalanced quotes: {cmd}"));
        // The shell's part (a redirection, `&&`) is not the command's.
        let args: Vec<&String> = words
            .iter()
            .skip(2)
            .take_while(|w| !(w.starts_with('>') || w.starts_with("2>") || *w == "&&" || *w == ";"))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .arg("--help")
            .env("HOME", std::env::temp_dir())
            .output()
            .unwrap();
        if !out.status.success() {
            bad.push(format!(
                "{cmd}\n  {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "README lines the CLI refuses:\n{}",
        bad.join("\n")
    );
}
