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
    if !login.scopes.iter().any(|sc| sc == "openid") {
        c.err(
            login.client.referenced,
            "login.scopes",
            "`openid` must be requested, or Kanidm issues no id_token",
        );
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
