//! `login:`, `expect:` and `steps:`: people, clients, causes, kept tokens and the changes a
//! step makes.

use super::*;

pub(super) fn check_login(c: &mut Checker<'_>, login: &LoginSettings, known: &Known<'_>) {
    let clients = &known.clients;
    for t in login.scopes.iter().chain(&login.redirect_path) {
        c.literal(t, login.client.referenced, "login");
    }
    c.reference(
        &login.client,
        "login.client",
        "OAuth2 client",
        clients,
        "kanidm.oauth2Clients",
    );
    match login.via {
        LoginVia::Builtin => {
            if let Some(k) = &login.kubelogin {
                let at = k
                    .exec
                    .as_ref()
                    .map(|e| e.referenced)
                    .or(k.setup.as_ref().map(|s| s.referenced))
                    .unwrap_or(login.client.referenced);
                c.err(
                    at,
                    "login.kubelogin",
                    "`kubelogin:` is read only with `via: kubelogin`",
                )
                .help = Some("add `via: kubelogin` to `login:`, or remove `kubelogin:`".into());
            }
            if !login.scopes.iter().any(|sc| sc == "openid") {
                c.err(
                    login.client.referenced,
                    "login.scopes",
                    "`openid` must be requested, or Kanidm issues no id_token",
                );
            }
        }
        LoginVia::Kubelogin => check_kubelogin(c, login, known),
    }
}

/// `via: kubelogin`: an exec block or setup flags kubelogin itself would accept, for the
/// scenario's client; the lab's additions (CA, browser, cache) are never the scenario's.
fn check_kubelogin(c: &mut Checker<'_>, login: &LoginSettings, known: &Known<'_>) {
    use crate::scenario::kubelogin as args;
    let at = login.client.referenced;
    if !login.scopes.is_empty() {
        c.err(at, "login.scopes", "with `via: kubelogin` kubelogin decides the scopes")
            .help = Some("write them as kubelogin's `--oidc-extra-scope` in the exec block (it adds `openid` itself)".into());
    }
    if login.redirect_port.is_some() || login.redirect_path.is_some() {
        c.err(at, "login.redirectPort", "with `via: kubelogin` kubelogin's own listener receives the redirect")
            .help = Some("kubelogin listens on 127.0.0.1:8000 (then 18000); `--listen-address` / `--oidc-redirect-url` in its arguments change that".into());
    }
    let Some(k) = &login.kubelogin else {
        c.err(at, "login.kubelogin", "`via: kubelogin` needs `kubelogin: {exec: …}` or `kubelogin: {setup: […]}`")
            .help = Some("post 1: `exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: kubectl, args: [oidc-login, get-token, --oidc-issuer-url, '${issuer:k8s}', --oidc-client-id, k8s]}`; post 2: `setup: [--oidc-issuer-url=${issuer:k8s}, --oidc-client-id=k8s]`".into());
        return;
    };
    let (field, command, words, anchor) = match (&k.exec, &k.setup) {
        (Some(e), None) => {
            let b = &e.value;
            if !matches!(
                b.api_version.as_str(),
                "client.authentication.k8s.io/v1beta1" | "client.authentication.k8s.io/v1"
            ) {
                c.err(e.referenced, "login.kubelogin.exec.apiVersion", format!("kubectl has no exec credential API `{}`", shown(&b.api_version)))
                    .help = Some("client.authentication.k8s.io/v1beta1 (post 1) or client.authentication.k8s.io/v1".into());
            }
            match b.interactive_mode.as_deref() {
                None if b.api_version.ends_with("/v1") => {
                    c.err(e.referenced, "login.kubelogin.exec.interactiveMode", "client.authentication.k8s.io/v1 requires `interactiveMode`")
                        .help = Some("`interactiveMode: Never` (what `oidc-login setup` prints) or `IfAvailable`".into());
                }
                Some(m) if !matches!(m, "Never" | "IfAvailable" | "Always") => {
                    c.err(
                        e.referenced,
                        "login.kubelogin.exec.interactiveMode",
                        format!("`{}` is not an interactive mode", shown(m)),
                    )
                    .help = Some("Never, IfAvailable or Always".into());
                }
                _ => {}
            }
            let mut words: Vec<&Spanned<String>> = Vec::new();
            words.extend(b.args.iter());
            (
                "login.kubelogin.exec.args",
                b.command.clone(),
                words,
                e.referenced,
            )
        }
        (None, Some(s)) => (
            "login.kubelogin.setup",
            "kubectl".to_string(),
            s.value.iter().collect(),
            s.referenced,
        ),
        _ => {
            let loc = k.exec.as_ref().map(|e| e.referenced).unwrap_or(at);
            c.err(loc, "login.kubelogin", "give exactly one of `exec` (the kubeconfig's exec block) and `setup` (the flags of `kubectl oidc-login setup`)");
            return;
        }
    };
    for w in &words {
        c.placeholders(
            &w.value,
            w.referenced,
            field,
            &known.clients,
            &known.persons,
        );
    }
    let mut argv: Vec<String> = words.iter().map(|w| w.value.clone()).collect();
    let offset = if k.setup.is_some() {
        argv.splice(0..0, ["oidc-login".to_string(), "setup".to_string()]);
        2
    } else {
        0
    };
    match args::parse(&command, &argv) {
        Ok(parsed) => {
            if k.exec.is_some() && parsed.subcommand != "get-token" {
                c.err(anchor, field, "an exec block runs `get-token`");
            }
            if let Some(id) = &parsed.client_id
                && id != &login.client.value
            {
                c.err(
                    anchor,
                    field,
                    format!(
                        "kubelogin's `--oidc-client-id` is `{}` but `login.client` is `{}`",
                        shown(id),
                        login.client.value
                    ),
                )
                .help = Some(
                    "the exec block and `login.client` name the same Kanidm OAuth2 client".into(),
                );
            }
            for sc in &parsed.extra_scopes {
                if sc.split_whitespace().next().is_none() {
                    c.err(anchor, field, "an empty `--oidc-extra-scope` value");
                }
            }
        }
        Err(e) => {
            let loc = e
                .index
                .and_then(|i| i.checked_sub(offset))
                .and_then(|i| words.get(i))
                .map(|w| w.referenced)
                .unwrap_or(anchor);
            c.err(loc, field, e.message).help = e.help;
        }
    }
}

/// Expectations (the scenario's, or a step's under `prefix`): each names a known person
/// and checks something that can be checked.
pub(super) fn check_expect(
    c: &mut Checker<'_>,
    expect: &[Expectation],
    prefix: &str,
    anchor: Location,
    known: &Known<'_>,
) {
    let (clients, persons) = (&known.clients, &known.persons);
    if expect.is_empty() {
        c.err(
            anchor,
            prefix.to_string(),
            "a scenario must expect something",
        )
        .help = Some(format!(
            "add at least one `- person: <name>` entry under `{prefix}`"
        ));
    }
    for (i, e) in expect.iter().enumerate() {
        let f = format!("{prefix}[{i}]");
        c.reference(
            &e.person,
            &format!("{f}.person"),
            "person",
            persons,
            "kanidm.persons",
        );
        if let Some(w) = &e.whoami {
            for t in w
                .username
                .iter()
                .chain(&w.groups_include)
                .chain(&w.groups_exclude)
            {
                c.placeholders(
                    t,
                    e.person.referenced,
                    &format!("{f}.whoami"),
                    clients,
                    persons,
                );
            }
        }
        let denied = e.login != LoginOutcome::Ok;
        let has_k8s = e.whoami.is_some() || !e.allowed.is_empty() || !e.forbidden.is_empty();
        if denied && (has_k8s || e.unauthorized.is_some()) {
            c.err(e.person.referenced, f.clone(), "a person whose login is denied gets no token, so it cannot have Kubernetes expectations");
        }
        if e.unauthorized.is_some() && has_k8s {
            c.err(
                e.person.referenced,
                f.clone(),
                "`unauthorized` excludes `whoami`, `allowed` and `forbidden`",
            )
            .help = Some(
                "a rejected token is rejected for every request; split into two scenarios".into(),
            );
        }
        if !denied && !has_k8s && e.unauthorized.is_none() {
            c.err(
                e.person.referenced,
                f.clone(),
                "this expectation checks nothing",
            )
            .help = Some(
                "add `whoami`, `allowed`, `forbidden`, `unauthorized`, or `login: access-denied` / `refused`"
                    .into(),
            );
        }
    }
}

/// Steps: names, changes (through the step planner, with the state each step starts
/// from), the API server of a step, expectations against the persons of that step, and
/// where each token comes from.
pub(super) fn check_steps(c: &mut Checker<'_>, s: &Scenario) {
    let plans = match crate::scenario::steps::plan(s) {
        Ok(p) => p,
        Err(e) => {
            c.err(e.loc, e.field, e.message);
            return;
        }
    };
    let mut earlier: BTreeSet<&str> = BTreeSet::from([crate::scenario::steps::INITIAL]);
    for (i, p) in plans.iter().enumerate() {
        let step = p.step;
        let f = format!("steps[{i}]");
        let name = &step.name;
        if !valid_scenario_name(&name.value) || name.value == crate::scenario::steps::INITIAL {
            c.err(name.referenced, format!("{f}.name"), format!("`{}` cannot name a step", shown(&name.value)))
                .help = Some("letters, digits, `-`, `_` and `.`, starting with a letter or digit; `initial` is taken".into());
        } else if earlier.contains(name.value.as_str()) {
            c.err(
                name.referenced,
                format!("{f}.name"),
                format!("duplicate step `{}`", shown(&name.value)),
            );
        }
        for (j, ch) in step.change.iter().enumerate() {
            check_change(c, ch, &format!("{f}.change[{j}]"));
        }
        let known = Known {
            groups: p
                .state
                .groups
                .iter()
                .map(|g| g.name.value.as_str())
                .collect(),
            persons: p
                .state
                .persons
                .iter()
                .map(|x| x.name.value.as_str())
                .collect(),
            clients: p
                .state
                .oauth2_clients
                .iter()
                .map(|o| o.name.value.as_str())
                .collect(),
        };
        if let Some(api) = &step.api_server {
            c.api_field = format!("{f}.apiServer");
            c.jti_points = Some(earlier.iter().map(|p| p.to_string()).collect());
            check_api_server(c, api, &known);
            check_api_values(c, &api.value);
            c.api_field = "apiServer".into();
            c.jti_points = None;
        }
        check_expect(
            c,
            &step.expect,
            &format!("{f}.expect"),
            name.referenced,
            &known,
        );
        check_token_sources(c, step, &f, p.kanidm_running, &earlier);
        earlier.insert(name.value.as_str());
    }
}

/// Where each of a step's tokens comes from: `tokenFrom` names `initial` or an earlier
/// step (and then `login:` does not apply); without it a fresh login, impossible while
/// Kanidm is stopped.
pub(super) fn check_token_sources(
    c: &mut Checker<'_>,
    step: &Step,
    f: &str,
    kanidm_running: bool,
    earlier: &BTreeSet<&str>,
) {
    for (j, e) in step.expect.iter().enumerate() {
        let fe = format!("{f}.expect[{j}]");
        match &e.token_from {
            Some(t) => {
                if !earlier.contains(t.value.as_str()) {
                    let hint =
                        did_you_mean(&t.value, earlier.iter().copied()).unwrap_or_else(|| {
                            format!(
                                "tokens are kept from `initial` and earlier steps: {}",
                                list(earlier)
                            )
                        });
                    c.err(
                        t.referenced,
                        format!("{fe}.tokenFrom"),
                        format!("unknown step `{}`", shown(&t.value)),
                    )
                    .help = Some(hint);
                }
                if e.login != LoginOutcome::Ok {
                    c.err(
                        t.referenced,
                        fe.clone(),
                        "`login` is about a fresh login; a kept token was already issued",
                    )
                    .help = Some("drop `login:` here, or drop `tokenFrom` to log in afresh".into());
                }
            }
            None if !kanidm_running => {
                c.err(
                    e.person.referenced,
                    fe.clone(),
                    "Kanidm is stopped in this step, so nobody can log in afresh",
                )
                .help = Some(
                    "add `tokenFrom: initial` (or an earlier step) to check a token issued before"
                        .into(),
                );
            }
            None => {}
        }
    }
}

/// Names a change introduces are checked like the ones in `kanidm:`.
pub(super) fn check_change(c: &mut Checker<'_>, ch: &Spanned<Change>, f: &str) {
    match &ch.value {
        Change::RenamePerson { to, .. } => c.iname(to, &format!("{f}.renamePerson.to")),
        Change::SetScopeMap { scopes, .. } => {
            if scopes.is_empty() {
                c.err(ch.referenced, format!("{f}.setScopeMap.scopes"), "a scope map needs at least one scope")
                    .help = Some("to take the group's access away, write `- removeScopeMap: {client: …, group: …}`".into());
            }
            for sc in scopes {
                if sc.value.is_empty()
                    || !sc
                        .value
                        .chars()
                        .all(|x| x.is_ascii_alphanumeric() || x == '_')
                {
                    c.err(
                        sc.referenced,
                        format!("{f}.setScopeMap.scopes"),
                        format!("invalid scope `{}`", shown(&sc.value)),
                    )
                    .help = Some("Kanidm scopes match ^[0-9a-zA-Z_]+$".into());
                }
            }
        }
        _ => {}
    }
}

/// `refresh:` and `concurrent:`: kubelogin's refresh of a token the person already has, so
/// only with `via: kubelogin`, only in a step, never together with `tokenFrom`.
pub(super) fn check_refreshes(c: &mut Checker<'_>, s: &Scenario) {
    let kubelogin = s.login.via == LoginVia::Kubelogin;
    if kubelogin {
        for p in s
            .kanidm
            .persons
            .iter()
            .filter(|p| p.credential == CredentialKind::Passkey)
        {
            c.err(p.name.referenced, "kanidm.persons", format!("`{}` logs in with a passkey, which the lab drives only through its built-in client", p.name.value))
                .help = Some("use `via: builtin` for passkey people (post2-passkey), or a password/TOTP person here".into());
        }
    }
    let all = s
        .expect
        .iter()
        .map(|e| ("expect".to_string(), e, true))
        .chain(s.steps.iter().enumerate().flat_map(|(i, st)| {
            st.expect
                .iter()
                .map(move |e| (format!("steps[{i}].expect"), e, false))
        }));
    for (f, e, initial) in all {
        if let Some(n) = &e.concurrent {
            if e.refresh.is_none() {
                c.err(
                    n.referenced,
                    format!("{f}.concurrent"),
                    "`concurrent` runs refreshes at once: it needs `refresh:`",
                );
            } else if !(2..=8).contains(&n.value) {
                c.err(
                    n.referenced,
                    format!("{f}.concurrent"),
                    format!("{} refreshes at once: the lab runs 2 to 8", n.value),
                );
            }
        }
        let Some(r) = &e.refresh else { continue };
        if !kubelogin {
            c.err(r.referenced, format!("{f}.refresh"), "a refresh is kubelogin's (`get-token --force-refresh`): it needs `login.via: kubelogin`")
                .help = Some("the built-in client logs in afresh for each step".into());
        } else if initial {
            c.err(
                r.referenced,
                format!("{f}.refresh"),
                "a refresh needs a token from before: put it in a step",
            )
            .help = Some(
                "`steps: [{name: refresh, expect: [{person: …, refresh: silent, whoami: …}]}]`"
                    .into(),
            );
        }
        if e.token_from.is_some() {
            c.err(r.referenced, format!("{f}.refresh"), "`refresh` refreshes the person's latest kubelogin cache; `tokenFrom` looks at a kept token: choose one");
        }
    }
}
