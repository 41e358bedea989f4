//! kubelogin's command line, read the way kubelogin (cobra + pflag) reads it: which
//! subcommand, which flags, what the authorize request will ask for. Pure: a scenario's exec
//! block is checked here when it loads, and the lab's additions are made here.

use std::fmt;

/// The kubelogin release the lab is tested with; its flags are the ones below.
pub const TESTED_VERSION: &str = "v1.36.3";

/// kubelogin's plugin name: `kubectl oidc-login` runs `kubectl-oidc_login` from PATH.
pub const PLUGIN_BINARY: &str = "kubectl-oidc_login";

/// How a flag takes its value (pflag: booleans may stand alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Value,
    Bool,
}

/// What the lab does with a flag a scenario writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Passed to kubelogin as written.
    Kept,
    /// The lab sets it (its CA, its browser, its cache): the scenario must not.
    LabOwned(&'static str),
    /// kubelogin has it, but the lab cannot run it faithfully.
    Refused(&'static str),
}

/// `get-token`'s and `setup`'s flags in kubelogin v1.36.3 (pkg/cmd: authentication.go,
/// get_token.go, pkce.go, tls.go, tokencache.go, root.go).
const FLAGS: &[(&str, Takes, Policy)] = &[
    ("oidc-issuer-url", Takes::Value, Policy::Kept),
    ("oidc-client-id", Takes::Value, Policy::Kept),
    (
        "oidc-client-secret",
        Takes::Value,
        Policy::Refused(
            "the posts' client is public (`create-public`): a secret would be a confidential client",
        ),
    ),
    ("oidc-redirect-url", Takes::Value, Policy::Kept),
    ("oidc-extra-scope", Takes::Value, Policy::Kept),
    ("oidc-use-access-token", Takes::Bool, Policy::Kept),
    ("oidc-request-header", Takes::Value, Policy::Kept),
    ("oidc-use-pkce", Takes::Bool, Policy::Kept),
    ("oidc-pkce-method", Takes::Value, Policy::Kept),
    ("oidc-auth-request-extra-params", Takes::Value, Policy::Kept),
    (
        "force-refresh",
        Takes::Bool,
        Policy::LabOwned(
            "a step refreshes with `refresh:`; the exec block kubectl runs never forces one",
        ),
    ),
    ("grant-type", Takes::Value, Policy::Kept),
    ("listen-address", Takes::Value, Policy::Kept),
    (
        "skip-open-browser",
        Takes::Bool,
        Policy::Refused(
            "the lab logs in through the browser kubelogin opens; without it nobody would",
        ),
    ),
    (
        "browser-command",
        Takes::Value,
        Policy::LabOwned("the lab hands the authorize URL to its own headless browser"),
    ),
    ("authentication-timeout-sec", Takes::Value, Policy::Kept),
    (
        "local-server-cert",
        Takes::Value,
        Policy::Refused("the lab's redirect listener is kubelogin's plain-HTTP one"),
    ),
    (
        "local-server-key",
        Takes::Value,
        Policy::Refused("the lab's redirect listener is kubelogin's plain-HTTP one"),
    ),
    ("open-url-after-authentication", Takes::Value, Policy::Kept),
    (
        "username",
        Takes::Value,
        Policy::Refused(
            "the password grant bypasses Kanidm's login pages; Kanidm does not offer it",
        ),
    ),
    (
        "password",
        Takes::Value,
        Policy::Refused(
            "the password grant bypasses Kanidm's login pages; Kanidm does not offer it",
        ),
    ),
    (
        "token-cache-dir",
        Takes::Value,
        Policy::LabOwned("each person gets a token cache inside the lab directory"),
    ),
    ("token-cache-storage", Takes::Value, Policy::Kept),
    (
        "certificate-authority",
        Takes::Value,
        Policy::LabOwned("kubelogin trusts the lab's CA, which signs Kanidm's certificate"),
    ),
    (
        "certificate-authority-data",
        Takes::Value,
        Policy::LabOwned("kubelogin trusts the lab's CA, which signs Kanidm's certificate"),
    ),
    (
        "insecure-skip-tls-verify",
        Takes::Bool,
        Policy::Refused("TLS is verified everywhere in the lab, against the lab's CA"),
    ),
    ("tls-renegotiation-once", Takes::Bool, Policy::Kept),
    ("tls-renegotiation-freely", Takes::Bool, Policy::Kept),
    ("v", Takes::Value, Policy::Kept),
];

/// Grant types the lab can drive: the authorization code flow through the browser.
const GRANT_TYPES: &[&str] = &["auto", "authcode"];

/// One kubelogin invocation as a kubeconfig's exec block (or `setup`) writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeloginArgs {
    /// `get-token` or `setup`.
    pub subcommand: String,
    pub issuer_url: Option<String>,
    pub client_id: Option<String>,
    /// `--oidc-extra-scope` values after pflag's CSV split, in order.
    pub extra_scopes: Vec<String>,
    pub redirect_url: Option<String>,
    pub listen_addresses: Vec<String>,
}

/// An argument kubelogin would refuse or the lab cannot run: which argument, why, what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// Index into `args` (None: the command or the list as a whole).
    pub index: Option<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(index: Option<usize>, message: impl Into<String>, help: Option<&str>) -> ArgError {
    ArgError {
        index,
        message: message.into(),
        help: help.map(str::to_string),
    }
}

/// pflag's StringSlice: one value is a CSV record (`a,b` is two scopes, `'a b'` one).
fn csv_split(v: &str) -> Vec<String> {
    v.split(',').map(str::to_string).collect()
}

/// Read `command` + `args` as kubectl and kubelogin would: `kubectl oidc-login <sub> …` or
/// `kubectl-oidc_login <sub> …`.
pub fn parse(command: &str, args: &[String]) -> Result<KubeloginArgs, ArgError> {
    let base = command.rsplit('/').next().unwrap_or(command);
    let rest_from = match base {
        "kubectl" => {
            if args.first().map(String::as_str) != Some("oidc-login") {
                return Err(err(
                    Some(0),
                    "`kubectl` runs kubelogin as the plugin `oidc-login`: the first argument must be `oidc-login`",
                    Some(
                        "write the exec block as post 1 does: command: kubectl, args: [oidc-login, get-token, …]",
                    ),
                ));
            }
            1
        }
        PLUGIN_BINARY => 0,
        _ => {
            return Err(err(
                None,
                format!("`{command}` is not kubelogin"),
                Some(
                    "the exec command is `kubectl` (args starting with `oidc-login`) or `kubectl-oidc_login`",
                ),
            ));
        }
    };
    let mut out = KubeloginArgs {
        subcommand: String::new(),
        issuer_url: None,
        client_id: None,
        extra_scopes: Vec::new(),
        redirect_url: None,
        listen_addresses: Vec::new(),
    };
    let mut i = rest_from;
    while i < args.len() {
        let a = &args[i];
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            if out.subcommand.is_empty() {
                if a != "get-token" && a != "setup" {
                    return Err(err(
                        Some(i),
                        format!("kubelogin has no subcommand `{a}` the lab can run"),
                        Some("`get-token` (the exec block) or `setup`"),
                    ));
                }
                out.subcommand = a.clone();
                i += 1;
                continue;
            }
            return Err(err(
                Some(i),
                format!(
                    "unexpected argument `{a}`: kubelogin takes only flags after `{}`",
                    out.subcommand
                ),
                Some("a flag's value goes in the next argument or after `=`"),
            ));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let Some(&(_, takes, policy)) = FLAGS.iter().find(|(n, _, _)| *n == name) else {
            let known: Vec<&str> = FLAGS.iter().map(|(n, _, _)| *n).collect();
            let hint = crate::scenario::error::did_you_mean(name, known.iter().copied())
                .unwrap_or_else(|| format!("kubelogin {TESTED_VERSION}'s flags: --oidc-issuer-url, --oidc-client-id, --oidc-extra-scope, --oidc-redirect-url, --listen-address, …"));
            return Err(err(
                Some(i),
                format!("kubelogin {TESTED_VERSION} has no flag `--{name}`"),
                Some(&hint),
            ));
        };
        let (value, next) = match (takes, inline) {
            (_, Some(v)) => (v, i + 1),
            (Takes::Bool, None) => ("true".to_string(), i + 1),
            (Takes::Value, None) => match args.get(i + 1) {
                Some(v) => (v.clone(), i + 2),
                None => {
                    return Err(err(
                        Some(i),
                        format!("flag needs an argument: --{name}"),
                        None,
                    ));
                }
            },
        };
        match policy {
            Policy::Kept => {}
            Policy::LabOwned(why) => {
                return Err(err(
                    Some(i),
                    format!("`--{name}` is set by the lab: {why}"),
                    Some("leave it out; the report says what the lab added"),
                ));
            }
            Policy::Refused(why) => {
                return Err(err(Some(i), format!("`--{name}`: {why}"), None));
            }
        }
        if takes == Takes::Bool
            && ![
                "true", "false", "1", "0", "t", "f", "TRUE", "FALSE", "True", "False", "T", "F",
            ]
            .contains(&value.as_str())
        {
            return Err(err(
                Some(i),
                format!("invalid argument \"{value}\" for \"--{name}\" flag: a boolean"),
                None,
            ));
        }
        match name {
            "oidc-issuer-url" => out.issuer_url = Some(value),
            "oidc-client-id" => out.client_id = Some(value),
            "oidc-extra-scope" => out.extra_scopes.extend(csv_split(&value)),
            "oidc-redirect-url" => out.redirect_url = Some(value),
            "listen-address" => out.listen_addresses.extend(csv_split(&value)),
            "grant-type" if !GRANT_TYPES.contains(&value.as_str()) => {
                return Err(err(
                    Some(i),
                    format!(
                        "`--grant-type={value}`: the lab drives the authorization code flow only"
                    ),
                    Some("auto (the default) or authcode"),
                ));
            }
            "token-cache-storage" if value != "disk" => {
                return Err(err(
                    Some(i),
                    format!(
                        "`--token-cache-storage={value}`: the lab keeps each person's cache on disk, in the lab directory"
                    ),
                    Some("leave it out (disk is the default)"),
                ));
            }
            _ => {}
        }
        i = next;
    }
    if out.subcommand.is_empty() {
        return Err(err(
            None,
            "no kubelogin subcommand: the exec block runs `get-token`",
            Some("args: [oidc-login, get-token, --oidc-issuer-url, …]"),
        ));
    }
    for a in &out.listen_addresses {
        let host = a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a);
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(err(
                None,
                format!("`--listen-address={a}`: the lab listens on loopback only"),
                Some("127.0.0.1:<port>"),
            ));
        }
    }
    if out.issuer_url.is_none() {
        return Err(err(
            None,
            "kubelogin needs `--oidc-issuer-url`",
            Some("--oidc-issuer-url=${issuer:<client>}"),
        ));
    }
    if out.client_id.is_none() {
        return Err(err(
            None,
            "kubelogin needs `--oidc-client-id`",
            Some("--oidc-client-id=<the Kanidm OAuth2 client>"),
        ));
    }
    Ok(out)
}

/// The scopes kubelogin puts in the authorize request: its extra scopes, then `openid`
/// (it always appends it, even when an extra scope already says `openid`).
pub fn scopes_requested(a: &KubeloginArgs) -> Vec<String> {
    let mut s = a.extra_scopes.clone();
    s.push("openid".into());
    s
}

/// What the lab adds to a kubelogin command line, each said in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabAdditions {
    pub ca_file: String,
    pub browser_command: String,
    /// None for `setup`, which caches nothing.
    pub token_cache_dir: Option<String>,
}

impl LabAdditions {
    pub fn args(&self) -> Vec<String> {
        let mut v = vec![
            format!("--certificate-authority={}", self.ca_file),
            format!("--browser-command={}", self.browser_command),
        ];
        if let Some(d) = &self.token_cache_dir {
            v.push(format!("--token-cache-dir={d}"));
        }
        v
    }
}

/// `args` with any `--token-cache-dir` replaced by `dir` (a kept or refreshed token's cache).
pub fn with_cache_dir(args: &[String], dir: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--token-cache-dir" {
            skip = true;
            continue;
        }
        if a.starts_with("--token-cache-dir=") {
            continue;
        }
        out.push(a.clone());
    }
    out.push(format!("--token-cache-dir={dir}"));
    out
}

/// The `kubectl config set-credentials …` command `kubectl oidc-login setup` prints (its
/// `setup.md` template), as argv without the leading `kubectl`.
pub fn set_credentials_from_setup(output: &str) -> Result<Vec<String>, String> {
    let start = output
        .find("kubectl config set-credentials")
        .ok_or("kubelogin's setup printed no `kubectl config set-credentials` command")?;
    let mut text = String::new();
    for line in output[start..].lines() {
        let l = line.trim_end();
        if let Some(cont) = l.strip_suffix('\\') {
            text.push_str(cont);
            text.push(' ');
        } else {
            text.push_str(l);
            break;
        }
    }
    let words = shlex::split(&text)
        .ok_or("the set-credentials command does not split like a shell line")?;
    match words.split_first() {
        Some((k, rest)) if k == "kubectl" => Ok(rest.to_vec()),
        _ => Err("the set-credentials command does not start with kubectl".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn post_1s_exec_block_reads_as_kubelogin_reads_it() {
        let a = parse(
            "kubectl",
            &v(&[
                "oidc-login",
                "get-token",
                "--oidc-issuer-url",
                "https://idm.example.com/oauth2/openid/k8s",
                "--oidc-client-id",
                "k8s",
                "--oidc-extra-scope",
                "openid profile groups email",
            ]),
        )
        .unwrap();
        assert_eq!(a.subcommand, "get-token");
        assert_eq!(a.client_id.as_deref(), Some("k8s"));
        // One scope string with spaces: pflag splits on commas only.
        assert_eq!(a.extra_scopes, v(&["openid profile groups email"]));
        assert_eq!(
            scopes_requested(&a).join(" "),
            "openid profile groups email openid"
        );
    }

    #[test]
    fn commas_split_scopes_and_equals_forms_work() {
        let a = parse(
            "/usr/local/bin/kubectl-oidc_login",
            &v(&[
                "get-token",
                "--oidc-issuer-url=https://x/oauth2/openid/k8s",
                "--oidc-client-id=k8s",
                "--oidc-extra-scope=email,groups",
                "--oidc-use-pkce",
            ]),
        )
        .unwrap();
        assert_eq!(a.extra_scopes, v(&["email", "groups"]));
    }

    #[test]
    fn what_kubelogin_or_the_lab_refuses_is_located() {
        let cases: &[(&str, &[&str], Option<usize>, &str)] = &[
            ("kubectl", &["get-token"], Some(0), "oidc-login"),
            ("kubelogin", &["get-token"], None, "is not kubelogin"),
            (
                "kubectl",
                &["oidc-login", "get-tokn"],
                Some(1),
                "no subcommand",
            ),
            (
                "kubectl",
                &["oidc-login", "get-token", "--oidc-isuer-url=x"],
                Some(2),
                "no flag",
            ),
            (
                "kubectl",
                &["oidc-login", "get-token", "--oidc-client-id"],
                Some(2),
                "needs an argument",
            ),
            (
                "kubectl",
                &["oidc-login", "get-token", "--token-cache-dir=/tmp"],
                Some(2),
                "set by the lab",
            ),
            (
                "kubectl",
                &["oidc-login", "get-token", "--insecure-skip-tls-verify"],
                Some(2),
                "TLS is verified",
            ),
            (
                "kubectl",
                &["oidc-login", "get-token", "--grant-type=password"],
                Some(2),
                "authorization code",
            ),
            (
                "kubectl",
                &["oidc-login", "get-token", "--oidc-client-id=k8s"],
                None,
                "--oidc-issuer-url",
            ),
            (
                "kubectl",
                &["oidc-login", "get-token", "--oidc-use-pkce=maybe"],
                Some(2),
                "boolean",
            ),
            (
                "kubectl",
                &[
                    "oidc-login",
                    "get-token",
                    "--oidc-issuer-url=x",
                    "--oidc-client-id=k",
                    "--listen-address=0.0.0.0:8000",
                ],
                None,
                "loopback",
            ),
        ];
        for (cmd, args, index, text) in cases {
            let e = parse(cmd, &v(args)).unwrap_err();
            assert_eq!(e.index, *index, "{args:?}: {e:?}");
            assert!(e.message.contains(text), "{args:?}: {}", e.message);
        }
        let typo = parse(
            "kubectl",
            &v(&["oidc-login", "get-token", "--oidc-isuer-url=x"]),
        )
        .unwrap_err();
        assert!(typo.help.unwrap().contains("oidc-issuer-url"));
    }

    #[test]
    fn the_cache_dir_is_replaced_not_repeated() {
        let a = v(&[
            "oidc-login",
            "get-token",
            "--token-cache-dir",
            "/old",
            "--x",
            "--token-cache-dir=/older",
        ]);
        assert_eq!(
            with_cache_dir(&a, "/new"),
            v(&["oidc-login", "get-token", "--x", "--token-cache-dir=/new"])
        );
    }

    #[test]
    fn setups_printed_command_is_read_back_as_argv() {
        // kubelogin v1.36.3's setup.md, rendered for post 2's two flags.
        let out = "## Set up the kubeconfig\n\nYou can run the following command to set up the kubeconfig:\n\n```\nkubectl config set-credentials oidc \\\n  --exec-api-version=client.authentication.k8s.io/v1 \\\n  --exec-interactive-mode=Never \\\n  --exec-command=kubectl \\\n  --exec-arg=oidc-login \\\n  --exec-arg=get-token \\\n  --exec-arg=\"--oidc-issuer-url=https://sso.kammel.dev/oauth2/openid/k8s\" \\\n  --exec-arg=\"--oidc-client-id=k8s\"\n```\n";
        let argv = set_credentials_from_setup(out).unwrap();
        assert_eq!(argv[..3], v(&["config", "set-credentials", "oidc"]));
        assert_eq!(argv.last().unwrap(), "--exec-arg=--oidc-client-id=k8s");
        assert_eq!(argv.len(), 10);
        assert!(set_credentials_from_setup("Authentication in progress...").is_err());
    }
}
