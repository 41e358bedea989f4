//! The token `explain` looks at, decoded without trusting it: read from a file or stdin (a
//! bare JWT, an `ExecCredential`, or a kubelogin token-cache entry), or from a kubeconfig's
//! user (a `token`, a `tokenFile`, or its exec credential plugin, run as kubectl runs it).

use super::InputError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Duration;

/// Kanidm's id_tokens are about 1 KiB; anything past this is not a token someone meant.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// An exec credential plugin (kubelogin's `get-token`) gets this long, as kubectl would wait
/// for a cached token; a plugin that wants a browser login fails here instead of hanging.
const EXEC_PLUGIN_DEADLINE: Duration = Duration::from_secs(60);

/// A decoded, unverified JWT.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub raw: String,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub alg: String,
    pub kid: Option<String>,
}

impl Jwt {
    /// `header.payload`, the bytes the signature covers.
    pub fn signing_input(&self) -> &str {
        self.raw
            .rsplit_once('.')
            .map(|(input, _)| input)
            .unwrap_or("")
    }

    pub fn signature(&self) -> &str {
        self.raw.rsplit_once('.').map(|(_, s)| s).unwrap_or("")
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim (`exp`, `nbf`, `iat`) in whole seconds, as go-oidc's `jsonTime`
    /// reads it: a JSON number (or a string holding one) as an int64, else as a float64
    /// converted the way Go converts on amd64 (truncated; out of range is the minimum
    /// int64). Anything else reads as absent.
    pub fn claim_time(&self, name: &str) -> Option<i64> {
        let v = self.claims.get(name)?;
        let text = match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return None,
        };
        if let Ok(i) = text.parse::<i64>() {
            return Some(i);
        }
        let f: f64 = text.parse().ok()?;
        Some(go_f64_to_i64(f))
    }
}

/// Go's `int64(f)` on amd64: truncation toward zero; NaN and values out of range give the
/// minimum int64 (the CPU's "integer indefinite").
pub fn go_f64_to_i64(f: f64) -> i64 {
    if f.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// Go's `time.Unix(s, 0)` compared as Go compares times: seconds since year 1, in an int64
/// that wraps (a date near the int64 limits wraps around, as it does in the API server).
pub fn go_unix_internal(s: i64) -> i64 {
    s.wrapping_add(62_135_596_800)
}

/// The token in `text`: a bare JWT (`Bearer ` allowed), an `ExecCredential` (`status.token`)
/// or a kubelogin token-cache entry (`id_token`).
pub fn extract(text: &str) -> Result<String, InputError> {
    let t = text.trim();
    if t.len() > MAX_TOKEN_BYTES * 4 {
        return Err(too_large(t.len()));
    }
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(|e| {
            InputError(format!(
                "the input starts like JSON but is not: {}. Give a bare JWT, an ExecCredential (`kubectl oidc-login get-token …` output) or a kubelogin token-cache file",
                crate::input_file::redact_values(&e.to_string())
            ))
        })?;
        if let Some(tok) = v.pointer("/status/token").and_then(Value::as_str) {
            return Ok(tok.to_string());
        }
        if let Some(tok) = v.get("id_token").and_then(Value::as_str) {
            return Ok(tok.to_string());
        }
        return Err(InputError(
            "a JSON document with neither `status.token` (an ExecCredential) nor `id_token` (kubelogin's token cache): nothing to explain".into(),
        ));
    }
    if t.contains("kind: Config") || t.starts_with("apiVersion:") {
        return Err(InputError(
            "this is a kubeconfig, not a token: pass it with `--kubeconfig <file>` (its user's token or exec plugin is used)".into(),
        ));
    }
    let t = t.strip_prefix("Bearer ").unwrap_or(t).trim();
    Ok(t.to_string())
}

fn too_large(n: usize) -> InputError {
    InputError(format!(
        "the input is {n} bytes; a Kanidm id_token is about 1 KiB and at most {MAX_TOKEN_BYTES} bytes are read. Is this the right file?"
    ))
}

/// Decode `raw` as a compact JWS. Every way it can be unusable is an [`InputError`] that says
/// which part is wrong.
pub fn decode(raw: &str) -> Result<Jwt, InputError> {
    if raw.is_empty() {
        return Err(InputError(
            "the token is empty: was the file or stdin the one you meant?".into(),
        ));
    }
    if raw.len() > MAX_TOKEN_BYTES {
        return Err(too_large(raw.len()));
    }
    if let Some((i, c)) = raw
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
    {
        return Err(InputError(format!(
            "not a JWT: character {:?} at byte {i}; a JWT is three base64url parts joined by `.`",
            c
        )));
    }
    let parts: Vec<&str> = raw.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(InputError(
                "this is an encrypted JWT (JWE, five parts); the API server accepts only signed JWTs (three parts)".into(),
            ));
        }
        n => {
            return Err(InputError(format!(
                "not a JWT: {n} part(s) separated by `.`, a JWT has three (header.payload.signature); was it cut short when copied?"
            )));
        }
    }
    let part = |i: usize, what: &str| -> Result<Vec<u8>, InputError> {
        URL_SAFE_NO_PAD.decode(parts[i]).map_err(|e| {
            InputError(format!(
                "not a JWT: its {what} (part {} of 3) is not unpadded base64url: {e}",
                i + 1
            ))
        })
    };
    let header_bytes = part(0, "header")?;
    let payload_bytes = part(1, "payload")?;
    let signature = part(2, "signature")?;
    let object = |bytes: &[u8], what: &str| -> Result<Map<String, Value>, InputError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(InputError(format!(
                "not a JWT: its {what} decodes to JSON {}, not an object",
                kind_of(&other)
            ))),
            Err(e) => Err(InputError(format!(
                "not a JWT: its {what} is not JSON ({e}); was the token truncated?"
            ))),
        }
    };
    let header = object(&header_bytes, "header")?;
    let claims = object(&payload_bytes, "payload")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => {
            return Err(InputError(
                "not a JWT: its header has no `alg` string".into(),
            ));
        }
    };
    if signature.is_empty() {
        return Err(InputError(format!(
            "the token is unsigned (alg {alg:?}, empty signature); the API server accepts only signed JWTs"
        )));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Jwt {
        raw: raw.to_string(),
        header,
        claims,
        alg,
        kid,
    })
}

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Read `path` (`-` = stdin), at most a few times [`MAX_TOKEN_BYTES`].
pub fn read_input(path: &Path) -> Result<String, InputError> {
    use std::io::Read;
    let limit = (MAX_TOKEN_BYTES * 4) as u64;
    let mut buf = Vec::new();
    if path != Path::new("-") {
        return crate::input_file::read_text(path, limit, "the file").map_err(|e| InputError(e.0));
    }
    std::io::stdin()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| InputError(format!("reading stdin: {e}")))?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len()));
    }
    String::from_utf8(buf).map_err(|_| InputError(format!("{} is not UTF-8 text", path.display())))
}

/// The token a kubeconfig's user presents: `token`, `tokenFile`, the legacy `oidc`
/// auth-provider's `id-token`, or what its exec credential plugin prints. The user is the
/// context's (current-context unless named), or `user` (as `kubectl --user`).
pub async fn from_kubeconfig(
    path: &Path,
    context: Option<&str>,
    user: Option<&str>,
) -> Result<String, InputError> {
    let text = read_input(path)?;
    let cfg: Value = serde_saphyr::from_str(&text).map_err(|e| {
        InputError(format!(
            "{}: not a kubeconfig: {}",
            path.display(),
            crate::input_file::yaml_error(&e)
        ))
    })?;
    let ctx_name = match context {
        None if user.is_some() => String::new(),
        Some(c) => c.to_string(),
        None => cfg
            .get("current-context")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                InputError(format!(
                    "{}: no current-context; pass --context <name>",
                    path.display()
                ))
            })?
            .to_string(),
    };
    let named = |list: &str, name: &str| -> Option<Value> {
        cfg.get(list)?
            .as_array()?
            .iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            .cloned()
    };
    let user_name = match user {
        Some(u) => u.to_string(),
        None => named("contexts", &ctx_name)
            .ok_or_else(|| {
                InputError(format!("{}: no context named {ctx_name:?}", path.display()))
            })?
            .pointer("/context/user")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    let user = named("users", &user_name)
        .and_then(|u| u.get("user").cloned())
        .ok_or_else(|| {
            InputError(format!(
                "{}: no user {user_name:?} in `users`",
                path.display()
            ))
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    if let Some(t) = user.get("token").and_then(Value::as_str) {
        return Ok(t.to_string());
    }
    if let Some(f) = user.get("tokenFile").and_then(Value::as_str) {
        return read_input(&base.join(f)).map(|t| t.trim().to_string());
    }
    if let Some(t) = user
        .pointer("/auth-provider/config/id-token")
        .and_then(Value::as_str)
    {
        return Ok(t.to_string());
    }
    let Some(exec) = user.get("exec") else {
        return Err(InputError(format!(
            "{}: user {user_name:?} has no token, tokenFile or exec plugin (client certificates are not OIDC)",
            path.display()
        )));
    };
    run_exec_plugin(exec, base).await
}

async fn run_exec_plugin(exec: &Value, base: &Path) -> Result<String, InputError> {
    let command = exec
        .get("command")
        .and_then(Value::as_str)
        .ok_or_else(|| InputError("the exec plugin has no command".into()))?;
    // kubectl resolves a relative command with a `/` against the kubeconfig's folder.
    let program = if command.contains('/') && !command.starts_with('/') {
        base.join(command)
    } else {
        std::path::PathBuf::from(command)
    };
    let args: Vec<String> = exec
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let api_version = exec
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("client.authentication.k8s.io/v1");
    let info = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    let mut cmd = tokio::process::Command::new(&program);
    crate::process::die_with_parent(cmd.as_std_mut());
    cmd.args(&args)
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for e in exec
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(k), Some(v)) = (
            e.get("name").and_then(Value::as_str),
            e.get("value").and_then(Value::as_str),
        ) {
            cmd.env(k, v);
        }
    }
    let out = tokio::time::timeout(EXEC_PLUGIN_DEADLINE, cmd.output())
        .await
        .map_err(|_| {
            InputError(format!(
                "the exec plugin `{command}` did not answer within {} s (does it want an interactive login? log in once with kubectl, then retry)",
                EXEC_PLUGIN_DEADLINE.as_secs()
            ))
        })?
        .map_err(|e| InputError(format!("running the exec plugin `{command}`: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(InputError(format!(
            "the exec plugin `{command}` failed ({}): {}",
            out.status,
            err.trim().lines().last().unwrap_or("no message")
        )));
    }
    extract(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn decodes_and_refuses_clearly() {
        let good = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256","kid":"k1"}"#),
            b64(r#"{"iss":"https://x","exp":5}"#),
            b64("sig")
        );
        let j = decode(&good).unwrap();
        assert_eq!((j.alg.as_str(), j.kid.as_deref()), ("ES256", Some("k1")));
        assert_eq!(j.claim_time("exp"), Some(5));
        let cases = [
            ("", "empty"),
            ("abc", "1 part"),
            ("a.b", "2 part"),
            ("a.b.c.d.e", "JWE"),
            ("a b.c.d", "character ' '"),
            ("!!!.e30.e30", "character '!'"),
            ("e30.e30.", "no `alg`"),
            (
                "e.e30.e30",
                "header (part 1 of 3) is not unpadded base64url",
            ),
            ("e30.bnVsbA.e30", "payload decodes to JSON null"),
            ("e30.eyJpc3Mi.e30", "payload is not JSON"),
        ];
        for (input, want) in cases {
            let err = decode(input).unwrap_err().0;
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
        assert!(decode(&unsigned).unwrap_err().0.contains("unsigned"));
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(decode(&huge).unwrap_err().0.contains("bytes"));
    }

    #[test]
    fn extracts_from_wrappers() {
        assert_eq!(extract("  Bearer abc.def.ghi \n").unwrap(), "abc.def.ghi");
        let exec = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"t.o.k"}}"#;
        assert_eq!(extract(exec).unwrap(), "t.o.k");
        assert_eq!(
            extract(r#"{"id_token":"i.d.t","refresh_token":"r"}"#).unwrap(),
            "i.d.t"
        );
        assert!(extract(r#"{"other":1}"#).unwrap_err().0.contains("neither"));
        assert!(extract("{nope").unwrap_err().0.contains("not"));
        assert!(
            extract("apiVersion: v1\nkind: Config\n")
                .unwrap_err()
                .0
                .contains("--kubeconfig")
        );
    }
}
