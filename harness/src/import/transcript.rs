//! The commands a person ran, read from a plain script or from a console transcript pasted
//! from a post: `$ ` (or `› `) prompts, output lines, `export NAME=value`, `${NAME}` and
//! `$NAME` references, `$(command)` substitutions given with `--set`, continuation lines.
//! Pure: text in, commands (as words, with where they were written) out.

use std::collections::BTreeMap;

/// One command, its words after expansion, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: usize,
    pub column: usize,
    pub words: Vec<String>,
    /// The output lines printed after it in a transcript (`uuid: …` of `person get`).
    pub output: Vec<String>,
}

/// A line that cannot be read as a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

const PROMPTS: [&str; 3] = ["$ ", "› ", "# $ "];

/// Whether the text is a console transcript (prompts) rather than a script.
fn is_transcript(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("$ ") || l.trim_start().starts_with("› "))
}

/// `${NAME}`, `$NAME` and `$(…)` replaced outside single quotes. `vars` holds exports and
/// `--set` values; `$(cmd)` looks up `cmd` as written (`--set whoami=alice`).
fn expand(text: &str, vars: &BTreeMap<String, String>) -> Result<String, (usize, String, String)> {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut single = false;
    while i < b.len() {
        let c = b[i];
        if c == '\'' {
            single = !single;
            out.push(c);
            i += 1;
            continue;
        }
        if c == '\\' && !single && i + 1 < b.len() {
            out.push(c);
            out.push(b[i + 1]);
            i += 2;
            continue;
        }
        if c != '$' || single || i + 1 >= b.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let (key, end, what) = match b[i + 1] {
            '{' => {
                let close = b[i + 2..].iter().position(|&x| x == '}').map(|p| i + 2 + p);
                let Some(close) = close else {
                    return Err((i, "an unterminated `${`".into(), "close it with `}`".into()));
                };
                (
                    b[i + 2..close].iter().collect::<String>(),
                    close + 1,
                    "variable",
                )
            }
            '(' => {
                let mut depth = 0;
                let mut close = None;
                for (k, &x) in b.iter().enumerate().skip(i + 1) {
                    if x == '(' {
                        depth += 1;
                    } else if x == ')' {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(k);
                            break;
                        }
                    }
                }
                let Some(close) = close else {
                    return Err((i, "an unterminated `$(`".into(), "close it with `)`".into()));
                };
                (
                    b[i + 2..close]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string(),
                    close + 1,
                    "command",
                )
            }
            x if x.is_ascii_alphabetic() || x == '_' => {
                let mut end = i + 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == '_') {
                    end += 1;
                }
                (b[i + 1..end].iter().collect::<String>(), end, "variable")
            }
            _ => {
                out.push(c);
                i += 1;
                continue;
            }
        };
        match vars.get(&key) {
            Some(v) => out.push_str(v),
            None => {
                return Err((
                    i,
                    format!("the {what} `{key}` has no value here"),
                    format!("give it: --set '{key}=<value>'"),
                ));
            }
        }
        i = end;
    }
    Ok(out)
}

/// `export NAME=value` / `NAME=value`: the name and the (unquoted) value.
fn assignment(words: &[String]) -> Option<(String, String)> {
    let w = match words {
        [e, w] if e == "export" => w,
        [w] => w,
        _ => return None,
    };
    let (k, v) = w.split_once('=')?;
    let ok = !k.is_empty()
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| (k.to_string(), v.to_string()))
}

/// Every command of `text`, in order. `set` seeds the variables (`--set NAME=VALUE`).
pub fn read(text: &str, set: &BTreeMap<String, String>) -> Result<Vec<Command>, TranscriptError> {
    let transcript = is_transcript(text);
    let mut vars = set.clone();
    let mut out: Vec<Command> = Vec::new();
    let mut pending: Option<(usize, usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        if let Some((l, c, mut acc)) = pending.take() {
            let t = raw.trim();
            match t.strip_suffix('\\') {
                Some(more) => {
                    acc.push_str(more);
                    acc.push(' ');
                    pending = Some((l, c, acc));
                }
                None => {
                    acc.push_str(t);
                    finish(l, c, &acc, &mut vars, &mut out)?;
                }
            }
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        let t = raw.trim();
        let (body, col) = if transcript {
            match PROMPTS.iter().find(|p| t.starts_with(**p)) {
                // A commented-out command in a transcript stays out.
                Some(&"# $ ") => continue,
                Some(p) => (&t[p.len()..], indent + p.chars().count() + 1),
                None => {
                    // Output of the command before.
                    if let Some(last) = out.last_mut()
                        && !t.is_empty()
                    {
                        last.output.push(t.to_string());
                    }
                    continue;
                }
            }
        } else {
            (t, indent + 1)
        };
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        match body.strip_suffix('\\') {
            Some(more) => pending = Some((line_no, col, format!("{more} "))),
            None => finish(line_no, col, body, &mut vars, &mut out)?,
        }
    }
    if let Some((l, c, _)) = pending {
        return Err(TranscriptError {
            line: l,
            column: c,
            message: "the file ends inside a command continued with `\\`".into(),
            help: None,
        });
    }
    Ok(out)
}

fn finish(
    line: usize,
    column: usize,
    body: &str,
    vars: &mut BTreeMap<String, String>,
    out: &mut Vec<Command>,
) -> Result<(), TranscriptError> {
    let expanded = expand(body, vars).map_err(|(at, message, help)| TranscriptError {
        line,
        column: column + at,
        message,
        help: Some(help),
    })?;
    let words = shlex::split(&expanded).ok_or_else(|| TranscriptError {
        line,
        column,
        message: "unbalanced quotes".into(),
        help: Some("every ' and \" needs its closing partner on the same command".into()),
    })?;
    if let Some((k, v)) = assignment(&words) {
        vars.entry(k).or_insert(v);
        return Ok(());
    }
    if !words.is_empty() {
        out.push(Command {
            line,
            column,
            words,
            output: Vec::new(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn post_1s_script_with_exports_and_whoami() {
        let text = "export MY_APISERVER_ADDRESS=\"k8s.internal\"\nexport MY_APISERVER_PORT=6443\n\n# Create the client\nkanidm system oauth2 create-public k8s Kubernetes \"https://${MY_APISERVER_ADDRESS}:${MY_APISERVER_PORT}\"\nkanidm group add-members k8s_users $(whoami)\n";
        let cmds = read(text, &set(&[("whoami", "alice")])).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].words[6], "https://k8s.internal:6443");
        assert_eq!(cmds[0].line, 5);
        assert_eq!(
            cmds[1].words,
            ["kanidm", "group", "add-members", "k8s_users", "alice"]
        );
        let e = read(text, &BTreeMap::new()).unwrap_err();
        assert_eq!((e.line, e.column), (6, 36));
        assert!(e.message.contains("`whoami`"), "{e:?}");
        assert!(e.help.unwrap().contains("--set 'whoami=<value>'"));
    }

    #[test]
    fn post_2s_console_blocks_keep_commands_and_their_output() {
        let text = "$ export GROUP_NAME=k8s_users\n$ kanidm group create ${GROUP_NAME}\nSuccessfully created group 'k8s_users'\n$ kanidm person get datosh\n...\nuuid: 7b89b6ea-1e8b-4aa8-98fb-a70cba498d16\n# $ kanidm system oauth2 add-redirect-url k8s http://localhost:18000\n$ kubectl create clusterrolebinding oidc-cluster-admin --clusterrole=cluster-admin --user='https://sso.kammel.dev/oauth2/openid/k8s#7b89'\n";
        let cmds = read(text, &BTreeMap::new()).unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0].words, ["kanidm", "group", "create", "k8s_users"]);
        assert!(cmds[1].output.iter().any(|l| l.starts_with("uuid: 7b89")));
        assert_eq!(cmds[2].words[4], "--clusterrole=cluster-admin");
        assert_eq!(
            cmds[2].words[5],
            "--user=https://sso.kammel.dev/oauth2/openid/k8s#7b89"
        );
    }

    #[test]
    fn continuations_quotes_and_single_quoted_dollars() {
        let text = "$ kubectl oidc-login setup \\\n  --oidc-issuer-url=https://x/oauth2/openid/k8s \\\n  --oidc-client-id=k8s\n$ echo '$NOT_EXPANDED'\n";
        let cmds = read(text, &BTreeMap::new()).unwrap();
        assert_eq!(cmds[0].words.len(), 5);
        assert_eq!(cmds[1].words[1], "$NOT_EXPANDED");
        for bad in [
            "kanidm group create 'unterminated\n",
            "x \\\n",
            "kanidm ${OPEN\n",
            "a $(b\n",
        ] {
            assert!(read(bad, &BTreeMap::new()).is_err(), "{bad:?}");
        }
    }
}
