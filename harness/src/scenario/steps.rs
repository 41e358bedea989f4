//! Steps, planned (pure): what each step changes in Kanidm and the API server, and the
//! state everything is in afterwards. The loader checks a scenario through [`plan`], the
//! run executes its output, `render` prints it.

use super::model::{ApiServerAuth, Change, KanidmState, Scenario, ScopeMap, Step};
use serde_saphyr::{Location, Spanned};

/// The `tokenFrom` value naming the tokens of the scenario's initial expectations.
pub const INITIAL: &str = "initial";

/// What one step does and what holds after it.
#[derive(Debug, Clone)]
pub struct StepPlan<'a> {
    pub step: &'a Step,
    /// Persons renamed by this step, (old, new), applied to the server before the rest.
    pub renames: Vec<(String, String)>,
    /// Kanidm's state after the step (members, scope maps, crypto, names).
    pub state: KanidmState,
    /// Whether the state differs from the one before the step.
    pub state_changed: bool,
    /// The changes that are events on the server, in order (expiry, sessions, keys,
    /// stop/start).
    pub events: Vec<&'a Change>,
    /// The API server's authentication in force during the step.
    pub api_server: &'a Spanned<ApiServerAuth>,
    /// Whether the API server is reconfigured (a new `apiServer`) or restarted in this step.
    pub api_server_changes: bool,
    /// Whether Kanidm runs during the step's checks.
    pub kanidm_running: bool,
}

/// A step that cannot be planned: where, which field, what is wrong.
#[derive(Debug, Clone)]
pub struct PlanError {
    pub loc: Location,
    pub field: String,
    pub message: String,
}

/// Every step of `s`, in order, each from the state the previous one left.
pub fn plan(s: &Scenario) -> Result<Vec<StepPlan<'_>>, PlanError> {
    let mut state = s.kanidm.clone();
    let mut api = &s.api_server;
    let mut running = true;
    let mut out = Vec::new();
    for (i, step) in s.steps.iter().enumerate() {
        let before = serde_json::to_string(&state).unwrap_or_default();
        let mut renames = Vec::new();
        let mut events = Vec::new();
        for (j, ch) in step.change.iter().enumerate() {
            let field = format!("steps[{i}].change[{j}]");
            let fail = |message: String| PlanError {
                loc: ch.referenced,
                field: field.clone(),
                message,
            };
            apply(&mut state, &ch.value).map_err(fail)?;
            match &ch.value {
                Change::RenamePerson { person, to } => {
                    renames.push((person.value.clone(), to.value.clone()));
                    events.push(&ch.value);
                }
                Change::StopKanidm if !running => {
                    return Err(fail("Kanidm is already stopped here".into()));
                }
                Change::StartKanidm if running => {
                    return Err(fail("Kanidm is already running here".into()));
                }
                Change::StopKanidm => {
                    running = false;
                    events.push(&ch.value);
                }
                Change::StartKanidm => {
                    running = true;
                    events.push(&ch.value);
                }
                c if !is_state_change(c) => {
                    if !running {
                        return Err(fail(
                            "Kanidm is stopped here: start it (`- startKanidm`) before changing it"
                                .into(),
                        ));
                    }
                    events.push(&ch.value);
                }
                _ if !running => {
                    return Err(fail(
                        "Kanidm is stopped here: start it (`- startKanidm`) before changing it"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        if let Some(a) = &step.api_server {
            api = a;
        }
        let state_changed = serde_json::to_string(&state).unwrap_or_default() != before;
        out.push(StepPlan {
            step,
            renames,
            state: state.clone(),
            state_changed,
            events,
            api_server: api,
            api_server_changes: step.api_server.is_some() || step.restart_api_server,
            kanidm_running: running,
        });
    }
    Ok(out)
}

/// Whether a step of `s` changes Kanidm beyond its state (events or a stop), so that the
/// scenario after it, wherever it runs, starts a fresh Kanidm.
pub fn leaves_kanidm_dirty(s: &super::LoadedScenario) -> bool {
    plan(&s.scenario)
        .map(|plans| {
            plans
                .iter()
                .any(|p| !p.events.is_empty() || !p.kanidm_running)
        })
        .unwrap_or(true)
}

/// Changes that live in Kanidm's state (planned by `kanidm::plan` like a new scenario).
pub fn is_state_change(c: &Change) -> bool {
    matches!(
        c,
        Change::AddToGroup { .. }
            | Change::RemoveFromGroup { .. }
            | Change::SetScopeMap { .. }
            | Change::RemoveScopeMap { .. }
            | Change::LegacyCrypto { .. }
            | Change::RenamePerson { .. }
    )
}

fn person_index(state: &KanidmState, name: &str) -> Result<usize, String> {
    state
        .persons
        .iter()
        .position(|p| p.name.value == name)
        .ok_or_else(|| {
            let known: Vec<&str> = state
                .persons
                .iter()
                .map(|p| p.name.value.as_str())
                .collect();
            format!(
                "no person `{name}` at this step (persons: {})",
                shortlist(&known)
            )
        })
}

/// Up to 10 names, for messages.
fn shortlist(names: &[&str]) -> String {
    let mut out: Vec<String> = names
        .iter()
        .take(10)
        .map(|n| format!("`{}`", n.escape_debug()))
        .collect();
    if names.len() > 10 {
        out.push(format!("and {} more", names.len() - 10));
    }
    if out.is_empty() {
        return "none".into();
    }
    out.join(", ")
}

fn client_index(state: &KanidmState, name: &str) -> Result<usize, String> {
    state
        .oauth2_clients
        .iter()
        .position(|c| c.name.value == name)
        .ok_or_else(|| {
            let known: Vec<&str> = state
                .oauth2_clients
                .iter()
                .map(|c| c.name.value.as_str())
                .collect();
            format!("no OAuth2 client `{name}` (clients: {})", shortlist(&known))
        })
}

fn group_known(state: &KanidmState, name: &str) -> Result<(), String> {
    match state.groups.iter().any(|g| g.name.value == name) {
        true => Ok(()),
        false => {
            let known: Vec<&str> = state.groups.iter().map(|g| g.name.value.as_str()).collect();
            Err(format!(
                "no group `{name}` in kanidm.groups (groups: {})",
                shortlist(&known)
            ))
        }
    }
}

/// `change` applied to `state` (events leave it as it is, but their names must exist).
pub fn apply(state: &mut KanidmState, change: &Change) -> Result<(), String> {
    match change {
        Change::AddToGroup { person, group } => {
            group_known(state, &group.value)?;
            let i = person_index(state, &person.value)?;
            let groups = &mut state.persons[i].groups;
            if groups.iter().any(|g| g.value == group.value) {
                return Err(format!(
                    "`{}` is already in `{}` at this step",
                    person.value, group.value
                ));
            }
            groups.push(group.clone());
        }
        Change::RemoveFromGroup { person, group } => {
            group_known(state, &group.value)?;
            let i = person_index(state, &person.value)?;
            let groups = &mut state.persons[i].groups;
            let before = groups.len();
            groups.retain(|g| g.value != group.value);
            if groups.len() == before {
                return Err(format!(
                    "`{}` is not in `{}` at this step",
                    person.value, group.value
                ));
            }
        }
        Change::SetScopeMap {
            client,
            group,
            scopes,
        } => {
            group_known(state, &group.value)?;
            let i = client_index(state, &client.value)?;
            let maps = &mut state.oauth2_clients[i].scope_maps;
            let new = ScopeMap {
                group: group.clone(),
                scopes: scopes.clone(),
            };
            match maps.iter_mut().find(|m| m.group.value == group.value) {
                Some(m) => *m = new,
                None => maps.push(new),
            }
        }
        Change::RemoveScopeMap { client, group } => {
            let i = client_index(state, &client.value)?;
            let maps = &mut state.oauth2_clients[i].scope_maps;
            let before = maps.len();
            maps.retain(|m| m.group.value != group.value);
            if maps.len() == before {
                return Err(format!(
                    "`{}` has no scope map for `{}` at this step",
                    client.value, group.value
                ));
            }
        }
        Change::LegacyCrypto { client, enabled } => {
            let i = client_index(state, &client.value)?;
            state.oauth2_clients[i].legacy_crypto = *enabled;
        }
        Change::RenamePerson { person, to } => {
            let i = person_index(state, &person.value)?;
            if person_index(state, &to.value).is_ok() {
                return Err(format!("a person `{}` already exists", to.value));
            }
            state.persons[i].name = to.clone();
        }
        Change::ExpireAccount { person }
        | Change::ClearAccountExpiry { person }
        | Change::RevokeSessions { person } => {
            person_index(state, &person.value)?;
        }
        Change::ResetSecrets { client } | Change::RotateSigningKey { client } => {
            client_index(state, &client.value)?;
        }
        Change::StopKanidm | Change::StartKanidm => {}
    }
    Ok(())
}

/// One thing a step does to Kanidm, in the order written: consecutive state changes become
/// one `Reconcile` (planned like a new scenario), events stay events.
#[derive(Debug)]
pub enum StepOp<'a> {
    Reconcile(KanidmState),
    Event(&'a Change),
}

/// A step's changes from `before`, as the run executes them and `render` prints them.
pub fn ops<'a>(before: &KanidmState, step: &'a Step) -> Result<Vec<StepOp<'a>>, String> {
    let mut out = Vec::new();
    let mut cur = before.clone();
    let mut pending: Option<KanidmState> = None;
    for ch in &step.change {
        let ch = &ch.value;
        if is_state_change(ch) && !matches!(ch, Change::RenamePerson { .. }) {
            apply(pending.get_or_insert_with(|| cur.clone()), ch)?;
            continue;
        }
        if let Some(next) = pending.take() {
            cur = next.clone();
            out.push(StepOp::Reconcile(next));
        }
        if matches!(ch, Change::RenamePerson { .. }) {
            apply(&mut cur, ch)?;
        }
        out.push(StepOp::Event(ch));
    }
    if let Some(next) = pending {
        out.push(StepOp::Reconcile(next));
    }
    Ok(out)
}

/// The scenario as it stands during step `p`: its Kanidm state and API server (what the
/// renderers and the login driver take), expectations and steps as written.
pub fn scenario_at(s: &super::LoadedScenario, p: &StepPlan<'_>) -> super::LoadedScenario {
    let mut at = s.clone();
    at.scenario.kanidm = p.state.clone();
    at.scenario.api_server = p.api_server.clone();
    at
}

/// Whether a step changes the signing keys or secrets of a client: from then on, any fresh
/// token may make the API server refetch the JWKS, and a kept token's answer may change.
fn changes_keys(p: &StepPlan<'_>) -> bool {
    p.events.iter().any(|e| {
        matches!(
            e,
            Change::RotateSigningKey { .. } | Change::ResetSecrets { .. }
        )
    })
}

/// Per step: whether its kept tokens must not be answered from the API server's 10 s
/// success cache: once signing keys changed in this scenario (in this step or an earlier
/// one), or after a config reloaded in place. Group, scope-map and account changes cannot
/// change a kept token's answer.
pub fn kept_answers_may_change(plans: &[StepPlan<'_>], reloads_in_place: bool) -> Vec<bool> {
    let mut keys_changed = false;
    plans
        .iter()
        .map(|p| {
            keys_changed |= changes_keys(p);
            keys_changed || (p.api_server_changes && reloads_in_place)
        })
        .collect()
}

/// Tokens to issue at a point beyond the one its expectations present, so that each later
/// step whose kept answers may change (see [`kept_answers_may_change`]) presents a token
/// the API server has never seen: it is verified afresh, with no success cache to wait
/// out. Keyed by (point, the person's name at that point); one per such step that names
/// the point. None when the scenario names a token by its `${jti:…}` (a spare has its own
/// jti, so it would not be "the" token of that point).
pub fn spare_tokens(
    plans: &[StepPlan<'_>],
    reloads_in_place: bool,
) -> std::collections::BTreeMap<(String, String), usize> {
    let mut out = std::collections::BTreeMap::new();
    let names_jti = plans.iter().any(|p| {
        p.api_server.value.placeholder_texts().iter().any(|t| {
            super::placeholder::scan(t).is_ok_and(|found| {
                found
                    .iter()
                    .any(|f| matches!(f, super::placeholder::Placeholder::Jti(..)))
            })
        })
    });
    if names_jti {
        return out;
    }
    let may_change = kept_answers_may_change(plans, reloads_in_place);
    for (j, p) in plans.iter().enumerate() {
        if !may_change[j] {
            continue;
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &p.step.expect {
            let Some(from) = &e.token_from else { continue };
            let point = from.value.as_str();
            // Held tokens: 0 = initial, i + 1 = step i; renames after the point count.
            let at = if point == INITIAL {
                0
            } else {
                match plans[..j].iter().position(|q| q.step.name.value == point) {
                    Some(i) => i + 1,
                    None => continue,
                }
            };
            let renames: Vec<(String, String)> = plans[at..=j]
                .iter()
                .flat_map(|q| q.renames.iter().cloned())
                .collect();
            let then = earlier_name(&e.person.value, &renames).to_string();
            if seen.insert((point.to_string(), then.clone())) {
                *out.entry((point.to_string(), then)).or_insert(0) += 1;
            }
        }
    }
    out
}

/// The person a name at a step was called at an earlier point, through the renames between
/// (`renames` in order, oldest first).
pub fn earlier_name<'a>(name: &'a str, renames: &'a [(String, String)]) -> &'a str {
    let mut n = name;
    for (old, new) in renames.iter().rev() {
        if n == new {
            n = old;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;
    use std::path::Path;

    const BASE: &str = r#"
description: steps
kanidm:
  groups: [{name: k8s_users}, {name: k8s_admins}]
  persons:
    - {name: alice, displayName: Alice, groups: [k8s_users]}
    - {name: bob, displayName: Bob, groups: [k8s_admins]}
  oauth2Clients:
    - name: k8s
      displayName: K
      landingUrl: https://kubernetes.io/
      localhostRedirects: true
      scopeMaps:
        - {group: k8s_users, scopes: [openid, groups]}
        - {group: k8s_admins, scopes: [openid, groups]}
apiServer:
  structured:
    jwt:
      - issuer: {client: k8s}
        claimMappings:
          username: {claim: preferred_username, prefix: ""}
login: {client: k8s, scopes: [openid, groups]}
expect:
  - {person: bob, allowed: ["list pods -A"]}
"#;

    fn with_steps(steps: &str) -> crate::scenario::LoadedScenario {
        load_str(Path::new("t.yaml"), &format!("{BASE}steps:\n{steps}")).unwrap()
    }

    #[test]
    fn each_step_starts_from_the_state_the_previous_one_left() {
        let s = with_steps(
            r#"
  - name: demote-bob
    change:
      - removeFromGroup: {person: bob, group: k8s_admins}
      - addToGroup: {person: bob, group: k8s_users}
    expect:
      - {person: bob, tokenFrom: initial, allowed: ["delete namespace scratch"]}
      - {person: bob, forbidden: ["delete namespace scratch"]}
  - name: rename-alice
    change:
      - renamePerson: {person: alice, to: alicia}
      - revokeSessions: {person: alicia}
    expect:
      - {person: alicia, whoami: {username: alicia}}
"#,
        );
        let plans = plan(&s.scenario).unwrap();
        assert_eq!(plans.len(), 2);
        let bob = |p: &StepPlan| {
            p.state.persons[1]
                .groups
                .iter()
                .map(|g| g.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(bob(&plans[0]), vec!["k8s_users"]);
        assert!(plans[0].state_changed && plans[0].events.is_empty());
        assert!(!plans[0].api_server_changes);
        // Step 2 keeps step 1's membership, renames alice and revokes her sessions.
        assert_eq!(bob(&plans[1]), vec!["k8s_users"]);
        assert_eq!(plans[1].state.persons[0].name.value, "alicia");
        assert_eq!(
            plans[1].renames,
            vec![("alice".to_string(), "alicia".to_string())]
        );
        assert_eq!(plans[1].events.len(), 2);
        assert_eq!(earlier_name("alicia", &plans[1].renames), "alice");
    }

    #[test]
    fn consecutive_state_changes_are_planned_together_and_events_keep_their_place() {
        let s = with_steps(
            r#"
  - name: s
    change:
      - removeFromGroup: {person: bob, group: k8s_admins}
      - addToGroup: {person: bob, group: k8s_users}
      - renamePerson: {person: bob, to: robert}
      - legacyCrypto: {client: k8s, enabled: true}
      - rotateSigningKey: {client: k8s}
    expect:
      - {person: robert, allowed: ["list pods -A"]}
"#,
        );
        let ops = ops(&s.scenario.kanidm, &s.scenario.steps[0]).unwrap();
        let shape: Vec<String> = ops
            .iter()
            .map(|o| match o {
                StepOp::Reconcile(st) => format!(
                    "reconcile {}:{:?} crypto={}",
                    st.persons[1].name.value,
                    st.persons[1]
                        .groups
                        .iter()
                        .map(|g| g.value.as_str())
                        .collect::<Vec<_>>(),
                    st.oauth2_clients[0].legacy_crypto
                ),
                StepOp::Event(c) => format!(
                    "event {}",
                    format!("{c:?}")
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                ),
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                "reconcile bob:[\"k8s_users\"] crypto=false".to_string(),
                "event RenamePerson".to_string(),
                "reconcile robert:[\"k8s_users\"] crypto=true".to_string(),
                "event RotateSigningKey".to_string(),
            ]
        );
    }

    #[test]
    fn stopping_kanidm_and_changing_the_api_server_are_tracked() {
        let s = with_steps(
            r#"
  - name: down
    change: [stopKanidm]
    restartApiServer: true
    expect:
      - {person: bob, tokenFrom: initial, unauthorized: {cause: authenticator-not-initialized}}
  - name: up
    change: [startKanidm]
    apiServer:
      legacyFlags: {client: k8s, signingAlgs: [ES256]}
    expect:
      - {person: bob, tokenFrom: initial, allowed: ["list pods -A"]}
"#,
        );
        let plans = plan(&s.scenario).unwrap();
        assert!(!plans[0].kanidm_running && plans[0].api_server_changes);
        assert!(!plans[0].state_changed);
        assert!(plans[1].kanidm_running);
        assert!(plans[1].api_server.value.legacy_flags.is_some());
    }

    #[test]
    fn impossible_changes_are_refused_where_they_are_written() {
        let mut s = with_steps(
            r#"
  - name: x
    change:
      - removeFromGroup: {person: bob, group: k8s_admins}
    expect:
      - {person: bob, tokenFrom: initial, allowed: ["list pods -A"]}
"#,
        )
        .scenario;
        let Change::RemoveFromGroup { person, .. } = &mut s.steps[0].change[0].value else {
            panic!("not a removeFromGroup")
        };
        person.value = "alice".into();
        let e = plan(&s).unwrap_err();
        assert!(e.message.contains("not in `k8s_admins`"), "{}", e.message);
        assert_eq!(e.field, "steps[0].change[0]");
        s.steps[0].change[0].value = Change::StartKanidm;
        assert!(plan(&s).unwrap_err().message.contains("already running"));
    }

    #[test]
    fn spare_tokens_only_where_kept_answers_may_change() {
        let s = with_steps(
            r#"
  - name: demote
    change:
      - removeFromGroup: {person: bob, group: k8s_admins}
    expect:
      - {person: bob, tokenFrom: initial, allowed: ["list pods -A"]}
  - name: rotated
    change:
      - rotateSigningKey: {client: k8s}
    expect:
      - {person: bob, tokenFrom: initial, allowed: ["list pods -A"]}
      - {person: bob, tokenFrom: initial, allowed: ["get pods"]}
      - {person: bob, allowed: ["list pods -A"]}
  - name: later
    expect:
      - {person: bob, tokenFrom: initial, unauthorized: {cause: signature}}
      - {person: bob, tokenFrom: rotated, allowed: ["list pods -A"]}
"#,
        );
        let plans = plan(&s.scenario).unwrap();
        let spares = spare_tokens(&plans, false);
        // `demote` cannot change a kept answer; `rotated` and `later` each want one
        // unseen initial token (one per step, however many checks), `later` one of `rotated`.
        assert_eq!(spares.get(&("initial".into(), "bob".into())), Some(&2));
        assert_eq!(spares.get(&("rotated".into(), "bob".into())), Some(&1));
        assert_eq!(spares.len(), 2);
    }

    #[test]
    fn spare_tokens_follow_renames_and_reloads_and_never_replace_a_named_jti() {
        let s = with_steps(
            r#"
  - name: renamed
    change:
      - renamePerson: {person: bob, to: robert}
    expect:
      - {person: robert, tokenFrom: initial, allowed: ["list pods -A"]}
  - name: flags
    apiServer:
      structured:
        jwt:
          - issuer: {client: k8s}
            claimMappings:
              username: {claim: preferred_username, prefix: "x:"}
    expect:
      - {person: robert, tokenFrom: initial, allowed: ["list pods -A"]}
"#,
        );
        let plans = plan(&s.scenario).unwrap();
        assert!(
            spare_tokens(&plans, false).is_empty(),
            "restarts verify afresh"
        );
        let reload = spare_tokens(&plans, true);
        assert_eq!(reload.get(&("initial".into(), "bob".into())), Some(&1));
        assert_eq!(reload.len(), 1);

        let s = with_steps(
            r#"
  - name: deny
    change:
      - rotateSigningKey: {client: k8s}
    apiServer:
      structured:
        jwt:
          - issuer: {client: k8s}
            claimMappings:
              username: {claim: preferred_username, prefix: ""}
            userValidationRules:
              - expression: "user.extra['x'] != ['JTI=${jti:initial:bob}']"
                message: denied
    expect:
      - {person: bob, tokenFrom: initial, unauthorized: {cause: user-rule}}
"#,
        );
        let plans = plan(&s.scenario).unwrap();
        assert!(spare_tokens(&plans, true).is_empty());
    }
}
