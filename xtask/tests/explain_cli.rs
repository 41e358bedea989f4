//! `cargo xtask explain` as a user runs it, offline (no issuer to reach): exit 0 with the
//! mapped user, 1 with the cause, 2 for input it cannot use — never a panic, whatever the
//! input.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ISS: &str = "https://idm.example.com/oauth2/openid/k8s";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/explain")
        .join(name)
}

/// An ES256-shaped token (offline, the signature is not checked).
fn token(aud: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISS, "aud": aud, "sub": "u-1", "exp": now + 600, "iat": now, "nbf": now,
        "preferred_username": "alice@idm.example.com", "groups": ["k8s_users@idm.example.com"],
    });
    jwt(&claims)
}

/// An ES256-shaped compact JWT of `claims` (the signature is not checked offline).
fn jwt(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

/// Run explain with `stdin` as the token (`--token -`).
fn explain(stdin: &[u8], auth: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["explain", "--token", "-", "--offline"])
        .args(auth)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that stops reading early (it refused the input) closes the pipe: fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config() -> String {
    fixture("post1.yaml").to_string_lossy().into_owned()
}

#[test]
fn accepted_prints_the_user_and_exits_0() {
    let (code, out, err) = explain(token("k8s").as_bytes(), &["--auth-config", &config()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(r#"verdict: accepted by jwt[0] as "alice@idm.example.com""#),
        "{out}"
    );
    assert!(
        out.contains("skip  signature   not checked (--offline)"),
        "{out}"
    );
    assert!(
        !out.contains(&token("k8s")),
        "the token itself is never printed"
    );
}

#[test]
fn rejected_prints_the_cause_and_exits_1() {
    let (code, out, _) = explain(
        token("kubernetes").as_bytes(),
        &["--auth-config", &config()],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("verdict: Unauthorized (401), cause audience"),
        "{out}"
    );
    assert!(out.contains("hint: the API server's audiences"), "{out}");
    // Post 2, from the static pod manifest: RS256 only.
    let m = fixture("manifest.yaml").to_string_lossy().into_owned();
    let (code, out, _) = explain(token("k8s").as_bytes(), &["--manifest", &m]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#"expected [\"RS256\"] got \"ES256\""#),
        "{out}"
    );
    let flags = format!(
        "--oidc-issuer-url={ISS} --oidc-client-id=k8s --oidc-signing-algs=ES256 --oidc-username-claim=preferred_username"
    );
    let (code, out, _) = explain(token("k8s").as_bytes(), &["--oidc-flags", &flags]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn unusable_input_exits_2_with_a_reason_never_a_panic() {
    let good = token("k8s");
    let truncated = &good[..good.len() / 2];
    let huge = "a".repeat(300_000);
    let mut wrong_b64 = good.clone();
    wrong_b64.replace_range(3..4, "*");
    let tokens: Vec<(&[u8], &str)> = vec![
        (b"hello world", "not a JWT"),
        (truncated.as_bytes(), "not a JWT"),
        (huge.as_bytes(), "bytes"),
        (wrong_b64.as_bytes(), "not a JWT"),
        (
            b"eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln",
            "payload is not JSON",
        ),
        (b"", "empty"),
        (&[0xff, 0xfe, 0x00], "not UTF-8"),
        (b"{\"kind\":\"ExecCredential\"}", "neither"),
    ];
    for (input, want) in tokens {
        let (code, out, err) = explain(input, &["--auth-config", &config()]);
        assert_eq!(code, Some(2), "{want}: {out}{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let base = std::fs::read_to_string(fixture("post1.yaml")).unwrap();
    let configs = [
        (write("garbage.yaml", "{{{{ not yaml"), "would refuse"),
        (
            write("prefix.yaml", &base.replace(", prefix: \"\"}", "}")),
            "prefix is required",
        ),
        (
            write(
                "kind.yaml",
                &base.replace("AuthenticationConfiguration", "Nope"),
            ),
            "kind:",
        ),
        (
            write(
                "cel.yaml",
                &base.replace(
                    "{claim: preferred_username, prefix: \"\"}",
                    "{expression: \"claims.sub +\"}",
                ),
            ),
            "username.expression",
        ),
        (
            "/nonexistent/auth.yaml".to_string(),
            "/nonexistent/auth.yaml: No such file",
        ),
        // Never read: a device that never ends, a kernel pseudo-file (also behind a
        // symlink), a FIFO that would block.
        ("/dev/zero".to_string(), "character device"),
        ("/proc/self/environ".to_string(), "pseudo-file"),
        (
            {
                let link = dir.path().join("environ.yaml");
                std::os::unix::fs::symlink("/proc/self/environ", &link).unwrap();
                link.to_string_lossy().into_owned()
            },
            "pseudo-file",
        ),
        (
            {
                let fifo = dir.path().join("fifo.yaml");
                let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
                fifo.to_string_lossy().into_owned()
            },
            "FIFO",
        ),
    ];
    for (path, want) in configs {
        let (code, _, err) = explain(good.as_bytes(), &["--auth-config", &path]);
        assert_eq!(code, Some(2), "{path}: {err}");
        assert!(err.contains(want), "want {want:?} in {err}");
        // Nothing of what the file holds is echoed (PATH is in every environ).
        assert!(!err.contains("PATH="), "{err}");
    }
    let (code, _, err) = explain(good.as_bytes(), &["--oidc-flags", "--oidc-client-id=k8s"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("must be specified together"), "{err}");
    let (code, _, err) = explain(
        good.as_bytes(),
        &[
            "--manifest",
            &write("pod.yaml", "kind: Pod\nspec: {containers: []}\n"),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("no kube-apiserver container"), "{err}");
    assert!(Path::new(env!("CARGO_BIN_EXE_xtask")).exists());
}

/// Numeric claims at and past the int64 limits, and of the wrong types, as Go reads them:
/// an answer (exit 0 or 1), never a panic or an overflow.
#[test]
fn extreme_numeric_claims_get_an_answer() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let values = [
        serde_json::json!(i64::MAX),
        serde_json::json!(i64::MIN),
        serde_json::json!(u64::MAX),
        serde_json::json!(1e300),
        serde_json::json!(-1e300),
        serde_json::json!(9.3e18),
        serde_json::json!("12345"),
        serde_json::json!("soon"),
        serde_json::json!(true),
        serde_json::json!(null),
        serde_json::json!([1]),
        serde_json::json!({"a": 1}),
        serde_json::json!(0.5),
    ];
    for claim in ["exp", "nbf", "iat"] {
        for v in &values {
            let mut claims = serde_json::json!({
                "iss": ISS, "aud": "k8s", "sub": "u-1", "exp": now + 600, "iat": now, "nbf": now,
                "preferred_username": "alice@idm.example.com",
            });
            claims[claim] = v.clone();
            let t = jwt(&claims);
            let (code, out, err) = explain(t.as_bytes(), &["--auth-config", &config()]);
            assert!(
                matches!(code, Some(0 | 1)),
                "{claim}={v}: exit {code:?}\n{out}{err}"
            );
            assert!(
                !err.contains("panicked") && !err.contains("overflow"),
                "{err}"
            );
        }
    }
}

/// A claim holding a terminal escape is printed escaped: a token cannot clear the screen or
/// forge a line of the report.
#[test]
fn control_characters_in_claims_are_printed_escaped() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISS, "aud": "k8s", "sub": "u-1\u{1b}[2J", "exp": now + 600, "iat": now, "nbf": now,
        "preferred_username": "alice\u{1b}[2J\rverdict: forged",
    });
    let t = jwt(&claims);
    let (code, out, err) = explain(t.as_bytes(), &["--auth-config", &config()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
    assert!(out.contains("\\u{1b}"), "{out}");
}

/// A file that is not what it should be is refused without quoting it: no line of it, no
/// value from it, reaches the terminal.
#[test]
fn refusals_do_not_quote_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "SECRETVALUE-7f3a";
    let manifest = dir.path().join("kube-apiserver.yaml");
    std::fs::write(&manifest, format!("kind: Pod\nspec: {secret}\n")).unwrap();
    let config = dir.path().join("auth.yaml");
    std::fs::write(&config, format!("root:$6${secret}:19000:0:99999:7:::\n")).unwrap();
    let good = token("k8s");
    for auth in [
        ["--manifest", manifest.to_str().unwrap()],
        ["--auth-config", config.to_str().unwrap()],
    ] {
        let (code, out, err) = explain(good.as_bytes(), &auth);
        assert_eq!(code, Some(2), "{out}{err}");
        assert!(!err.contains(secret) && !out.contains(secret), "{err}");
    }
}
