//! Verdicts on a configuration (pure): what kube-apiserver's log says, what explain's
//! validator says, in one shape, and whether they agree on each case.

use regex::Regex;
use std::sync::OnceLock;

/// One field error, as the API server words it (`jwt[0].issuer.url: Invalid value: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    /// `Invalid value`, `Required value`, `Duplicate value`, `Too many`, …
    pub kind: String,
    /// The rest of the message (the value and the reason).
    pub detail: String,
}

impl FieldError {
    /// What must agree: the field, the kind, and for CEL the first compiler message (with its
    /// location) or the result-type reason.
    pub fn key(&self) -> String {
        let mut k = format!("{}: {}", self.path, self.kind);
        if let Some(i) = self.detail.find("compilation failed: ") {
            let rest = &self.detail[i..];
            let first = rest.lines().next().unwrap_or(rest);
            // Several compiler errors: only the first is compared.
            let first = first.split("; ERROR:").next().unwrap_or(first);
            k.push_str(": ");
            k.push_str(first.trim_end_matches(',').trim());
        } else if let Some(i) = self.detail.find("must evaluate to") {
            k.push_str(": ");
            k.push_str(self.detail[i..].trim_end_matches([']', ',']).trim());
        }
        k
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The configuration loaded: the API server went on to the next step.
    Accepted,
    /// The file was refused before validation: version, kind, an unknown or mistyped field.
    Undecodable(String),
    /// Validation refused it, with these field errors.
    Refused(Vec<FieldError>),
    /// Anything else (the run itself went wrong): no verdict.
    Unknown(String),
}

impl Verdict {
    pub fn short(&self) -> String {
        match self {
            Verdict::Accepted => "accepted".into(),
            Verdict::Undecodable(m) => format!("refused at decoding: {}", first_line(m)),
            Verdict::Refused(errs) => format!(
                "refused: {}",
                errs.iter()
                    .map(FieldError::key)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
            Verdict::Unknown(m) => format!("no verdict: {}", first_line(m)),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn field_error_start() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?:^|\[|, |\n)\s*((?:jwt|anonymous)(?:\[\d+\])?(?:\.[A-Za-z]+(?:\[\d+\])?)*): (Invalid value|Required value|Duplicate value|Forbidden|Unsupported value|Too many|Too long|Internal error|Not found)",
        )
        .unwrap_or_else(|e| unreachable!("a constant regex: {e}"))
    })
}

/// The field errors in an aggregate (`[e1, e2]` or `e1`).
pub fn field_errors(text: &str) -> Vec<FieldError> {
    let starts: Vec<(usize, usize, String, String)> = field_error_start()
        .captures_iter(text)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let path = c.get(1)?;
            Some((
                path.start(),
                whole.end(),
                path.as_str().to_string(),
                c.get(2)?.as_str().to_string(),
            ))
        })
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, (_, end, path, kind))| {
            let stop = starts.get(i + 1).map_or(text.len(), |n| n.0);
            let detail = text[*end..stop]
                .trim_start_matches(':')
                .trim()
                .trim_end_matches([',', ']', '['])
                .trim()
                .to_string();
            FieldError {
                path: path.clone(),
                kind: kind.clone(),
                detail,
            }
        })
        .collect()
}

/// The error kube-apiserver exited with, from its log (klog: `"command failed" err="…"` on
/// one line, or `err=<` then tab-indented lines then ` >`).
pub fn command_failed(log: &str) -> Option<String> {
    let mut lines = log.lines();
    while let Some(l) = lines.next() {
        let Some(i) = l.find("\"command failed\" err=") else {
            continue;
        };
        let rest = &l[i + "\"command failed\" err=".len()..];
        if rest.starts_with('<') {
            let mut out = Vec::new();
            for l in lines.by_ref() {
                if l.trim() == ">" {
                    break;
                }
                out.push(l.strip_prefix('\t').unwrap_or(l));
            }
            return Some(out.join("\n"));
        }
        return Some(go_unquote(rest));
    }
    None
}

/// A Go `%q` string's contents.
fn go_unquote(s: &str) -> String {
    let s = s.trim();
    let inner = s.strip_prefix('"').unwrap_or(s);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// kube-apiserver's verdict from its log. It was started with an authorization webhook
/// file that does not exist, which it reads right after building authentication: that error
/// means the authentication configuration passed.
pub fn from_apiserver_log(log: &str) -> Verdict {
    let Some(err) = command_failed(log) else {
        return Verdict::Unknown(format!(
            "no \"command failed\" line in the log (last lines: {})",
            log.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
        ));
    };
    // 1.36 prefixes validation errors; 1.33 prints them bare. Errors from building an
    // authenticator (after validation) carry no `jwt[i]`: the corpus has one then.
    let body = err
        .strip_prefix("invalid authentication configuration: ")
        .unwrap_or(&err);
    let body = if body.starts_with("issuer.") || body.starts_with("claimMappings.") {
        format!("jwt[0].{body}")
    } else if let Some(i) = body.find("oidc: egress lookup required") {
        format!(
            "jwt[0].issuer.egressSelectorType: Invalid value: {}",
            &body[i..]
        )
    } else {
        body.to_string()
    };
    let errs = field_errors(&body);
    if err.starts_with("invalid authorization config") {
        Verdict::Accepted
    } else if !errs.is_empty() && !err.starts_with("failed to load") {
        Verdict::Refused(errs)
    } else if err.starts_with("failed to load authentication configuration")
        || [
            "strict decoding error",
            "json: cannot unmarshal",
            "no kind \"",
            "' is missing in '",
            "yaml: ",
        ]
        .iter()
        .any(|m| err.contains(m))
    {
        Verdict::Undecodable(err)
    } else {
        Verdict::Unknown(err)
    }
}

/// explain's verdict on the same file: `config::from_config`'s answer.
pub fn from_explain(result: &Result<(), String>) -> Verdict {
    let Err(msg) = result else {
        return Verdict::Accepted;
    };
    if msg.contains("(decoding is strict)") {
        return Verdict::Undecodable(msg.clone());
    }
    let body = msg.split_once(":\n").map_or(msg.as_str(), |(_, b)| b);
    let errs = field_errors(body);
    // apiVersion/kind problems: the API server finds them while decoding.
    let whole = body
        .lines()
        .map(str::trim)
        .any(|l| l.starts_with("apiVersion:") || l.starts_with("kind:"));
    if whole {
        Verdict::Undecodable(msg.clone())
    } else if errs.is_empty() {
        Verdict::Unknown(msg.clone())
    } else {
        Verdict::Refused(errs)
    }
}

/// The verdict on case `i` of a batch: the errors of `jwt[i]`.
pub fn for_case(v: &Verdict, i: usize) -> Verdict {
    match v {
        Verdict::Refused(errs) => {
            let prefix = format!("jwt[{i}].");
            let mine: Vec<FieldError> = errs
                .iter()
                .filter(|e| e.path.starts_with(&prefix))
                .map(|e| FieldError {
                    path: format!("jwt[*].{}", &e.path[prefix.len()..]),
                    ..e.clone()
                })
                .collect();
            if mine.is_empty() {
                Verdict::Accepted
            } else {
                Verdict::Refused(mine)
            }
        }
        other => other.clone(),
    }
}

/// Do they agree? Both accept; both refuse while decoding; or both refuse with the same
/// field errors (same fields and kinds, and the same first CEL message).
pub fn agree(apiserver: &Verdict, explain: &Verdict) -> bool {
    match (apiserver, explain) {
        (Verdict::Accepted, Verdict::Accepted) => true,
        (Verdict::Undecodable(_), Verdict::Undecodable(_)) => true,
        (Verdict::Refused(a), Verdict::Refused(b)) => {
            let mut a: Vec<String> = a.iter().map(FieldError::key).collect();
            let mut b: Vec<String> = b.iter().map(FieldError::key).collect();
            a.sort();
            a.dedup();
            b.sort();
            b.dedup();
            a == b
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube-apiserver 1.36.2's own output (two errors, one with a CEL snippet).
    const MULTI: &str = "I1206 21:48:28.9 1 options.go:263] external host\nE1206 21:48:28.954739   31454 run.go:72] \"command failed\" err=<\n\tinvalid authentication configuration: [jwt[0].claimMappings.groups.expression: Invalid value: \"claims.groups.filter(g, g.startsWith('k8s_'))\": compilation failed: ERROR: <input>:1:7: expression of type 'any' cannot be range of a comprehension (must be list, map, or dynamic)\n\t | claims.groups.filter(g, g.startsWith('k8s_'))\n\t | ......^, jwt[1].claimValidationRules[0].expression: Invalid value: \"claims.email_verified\": must evaluate to bool]\n >\n";

    #[test]
    fn reads_the_api_servers_words() {
        let v = from_apiserver_log(MULTI);
        let Verdict::Refused(errs) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs[0].key(),
            "jwt[0].claimMappings.groups.expression: Invalid value: compilation failed: ERROR: <input>:1:7: expression of type 'any' cannot be range of a comprehension (must be list, map, or dynamic)"
        );
        assert_eq!(
            errs[1].key(),
            "jwt[1].claimValidationRules[0].expression: Invalid value: must evaluate to bool"
        );
        assert_eq!(
            for_case(&v, 1),
            Verdict::Refused(vec![FieldError {
                path: "jwt[*].claimValidationRules[0].expression".into(),
                kind: "Invalid value".into(),
                detail: "\"claims.email_verified\": must evaluate to bool".into()
            }])
        );
        let one = "E1206 21:48:29.96 1 run.go:72] \"command failed\" err=\"failed to load authentication configuration from file \\\"unk.yaml\\\": strict decoding error: unknown field \\\"jwts\\\"\"\n";
        assert!(
            matches!(from_apiserver_log(one), Verdict::Undecodable(m) if m.contains("unknown field \"jwts\""))
        );
        let ok = "E1206 1 run.go:72] \"command failed\" err=\"invalid authorization config: stat /nonexistent: no such file or directory\"\n";
        assert_eq!(from_apiserver_log(ok), Verdict::Accepted);
        assert!(matches!(from_apiserver_log("nothing"), Verdict::Unknown(_)));
    }

    #[test]
    fn explain_and_the_api_server_compared() {
        let explain = Err("x: the API server would refuse this configuration (invalid authentication configuration):\n  jwt[0].claimMappings.groups.expression: Invalid value: \"claims.groups.filter(g, g.startsWith('k8s_'))\": compilation failed: ERROR: <input>:1:7: expression of type 'any' cannot be range of a comprehension (must be list, map, or dynamic)\n  jwt[1].claimValidationRules[0].expression: Invalid value: \"claims.email_verified\": must evaluate to bool".to_string());
        let e = from_explain(&explain);
        assert!(agree(&from_apiserver_log(MULTI), &e));
        assert!(!agree(&from_apiserver_log(MULTI), &Verdict::Accepted));
        assert!(!agree(&for_case(&e, 0), &for_case(&e, 1)));
    }
}
