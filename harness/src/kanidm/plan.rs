//! The Kanidm planner: which writes take a server from one scenario's state to the next.
//!
//! Pure (scenario states in, operations out) and unit-tested. A run executes a plan through
//! `kanidm_client` ([`super::reconcile`]); `cargo xtask render` prints the same plan from an
//! empty server, each operation as the `kanidm` CLI line a human would type — so what render
//! shows is what a run applies. From the empty state the plan is the whole provisioning.
//! What cannot change in place (the `idm_all_persons` credential policy) is refused, and the
//! run starts a fresh Kanidm instead.

use crate::scenario::model::{
    ClaimJoin, ClaimMap, CredentialKind, KanidmState, OAuth2Client, Person, ScopeMap,
};
use std::collections::{BTreeMap, BTreeSet};

/// One write to Kanidm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CredentialPolicy(&'static str),
    DeleteClient(String),
    DeletePerson(String),
    DeleteGroup(String),
    CreateGroup(String),
    CreatePerson {
        name: String,
        display_name: String,
        mail: Vec<String>,
    },
    UpdatePerson {
        name: String,
        display_name: String,
        mail: Vec<String>,
    },
    /// Exactly these members (none: purge).
    SetMembers {
        group: String,
        members: Vec<String>,
    },
    /// Credentials for a new person (password+TOTP, password, or a passkey reset token).
    Enrol(String, CredentialKind),
    CreateClient {
        name: String,
        public: bool,
        display_name: String,
        landing_url: String,
    },
    UpdateClient {
        name: String,
        display_name: String,
        landing_url: String,
    },
    RemoveRedirect {
        client: String,
        url: String,
    },
    AddRedirect {
        client: String,
        url: String,
    },
    LocalhostRedirects {
        client: String,
        on: bool,
    },
    DeleteScopeMap {
        client: String,
        group: String,
        sup: bool,
    },
    SetScopeMap {
        client: String,
        group: String,
        scopes: Vec<String>,
        sup: bool,
    },
    LegacyCrypto {
        client: String,
        on: bool,
    },
    PreferShortUsername {
        client: String,
        on: bool,
    },
    DeleteClaimMap {
        client: String,
        claim: String,
        group: String,
    },
    SetClaimMap {
        client: String,
        claim: String,
        group: String,
        values: Vec<String>,
        join: Option<ClaimJoin>,
    },
    SetImage {
        client: String,
        file: String,
    },
    DeleteImage {
        client: String,
    },
}

/// What to write, and what the server holds afterwards.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// The scenario's state plus persons it does not mention, kept in no group (their
    /// sign-in survives for later scenarios).
    pub server_state: KanidmState,
    /// Persons recreated because their credential kind changed: their Kanidm sessions are void.
    pub replaced_persons: Vec<String>,
    /// A person or client is deleted: tokens issued before may name entries (UUIDs, signing
    /// keys) that no longer exist.
    pub deleted_entries: bool,
    /// Persons whose entry (and so credentials, UUID and sessions) stays.
    pub kept_persons: Vec<String>,
}

/// Why the server cannot be brought to `next` in place, if it cannot.
pub fn in_place_blocker(prev: &KanidmState, next: &KanidmState) -> Option<String> {
    if prev.credential_type_minimum != next.credential_type_minimum {
        return Some(format!(
            "the idm_all_persons credential policy changes ({:?} -> {:?})",
            prev.credential_type_minimum.map(|m| m.as_kanidm()),
            next.credential_type_minimum.map(|m| m.as_kanidm())
        ));
    }
    None
}

/// The writes that take a server from `prev` (None: a fresh server) to `next`.
/// Err: the change cannot be made in place (the caller starts a fresh server).
pub fn plan(prev: Option<&KanidmState>, next: &KanidmState) -> Result<Plan, String> {
    let empty = KanidmState::default();
    let ps = prev.unwrap_or(&empty);
    let mut p = Plan::default();
    match prev {
        None => {
            if let Some(min) = next.credential_type_minimum {
                p.ops.push(Op::CredentialPolicy(min.as_kanidm()));
            }
        }
        Some(prev) => {
            if let Some(why) = in_place_blocker(prev, next) {
                return Err(why);
            }
        }
    }
    let d = Diff::new(ps, next);
    // Entries that go away first: clients, then persons, then groups (Kanidm drops
    // references to deleted entries, such as scope maps and memberships, by itself).
    d.removals(&mut p);
    d.groups(&mut p);
    // Persons the scenario does not mention stay, in no group (first: they may hold a mail
    // address a scenario person is about to take).
    let mut server_state = next.clone();
    server_state.persons.extend(d.dormant(&mut p));
    let enrol = d.persons(&mut p);
    d.memberships(&mut p);
    p.ops
        .extend(enrol.into_iter().map(|(n, k)| Op::Enrol(n, k)));
    d.clients(&mut p);
    p.server_state = server_state;
    Ok(p)
}

/// Both states, indexed by name.
struct Diff<'a> {
    prev: &'a KanidmState,
    next: &'a KanidmState,
    prev_clients: BTreeMap<&'a str, &'a OAuth2Client>,
    next_clients: BTreeMap<&'a str, &'a OAuth2Client>,
    prev_persons: BTreeMap<&'a str, &'a Person>,
    next_persons: BTreeMap<&'a str, &'a Person>,
    prev_groups: BTreeSet<&'a str>,
    next_groups: BTreeSet<&'a str>,
}

impl<'a> Diff<'a> {
    fn new(prev: &'a KanidmState, next: &'a KanidmState) -> Self {
        let clients = |s: &'a KanidmState| {
            s.oauth2_clients
                .iter()
                .map(|c| (c.name.value.as_str(), c))
                .collect()
        };
        let persons = |s: &'a KanidmState| {
            s.persons
                .iter()
                .map(|x| (x.name.value.as_str(), x))
                .collect()
        };
        let groups = |s: &'a KanidmState| s.groups.iter().map(|g| g.name.value.as_str()).collect();
        Diff {
            prev,
            next,
            prev_clients: clients(prev),
            next_clients: clients(next),
            prev_persons: persons(prev),
            next_persons: persons(next),
            prev_groups: groups(prev),
            next_groups: groups(next),
        }
    }

    fn deleted_groups(&self) -> BTreeSet<&'a str> {
        self.prev_groups
            .difference(&self.next_groups)
            .copied()
            .collect()
    }

    /// Clients that go (or change between public and confidential), persons whose
    /// credential kind changes (they are recreated).
    fn removals(&self, p: &mut Plan) {
        for (name, old) in &self.prev_clients {
            if self
                .next_clients
                .get(name)
                .is_none_or(|c| c.public != old.public)
            {
                p.ops.push(Op::DeleteClient(name.to_string()));
                p.deleted_entries = true;
            }
        }
        for (name, old) in &self.prev_persons {
            // Persons the scenario does not mention stay (see `dormant`).
            if self
                .next_persons
                .get(name)
                .is_some_and(|n| n.credential != old.credential)
            {
                p.ops.push(Op::DeletePerson(name.to_string()));
                p.replaced_persons.push(name.to_string());
                p.deleted_entries = true;
            }
        }
    }

    fn groups(&self, p: &mut Plan) {
        for g in self.deleted_groups() {
            p.ops.push(Op::DeleteGroup(g.to_string()));
        }
        for g in self.next_groups.difference(&self.prev_groups) {
            p.ops.push(Op::CreateGroup(g.to_string()));
        }
    }

    /// Persons the scenario does not mention: kept, in no group and without mail (it is
    /// unique in Kanidm, and the scenario may give it to someone else).
    fn dormant(&self, p: &mut Plan) -> Vec<Person> {
        let mut kept = Vec::new();
        for (name, old) in &self.prev_persons {
            if self.next_persons.contains_key(name) {
                continue;
            }
            let mut dormant = (*old).clone();
            dormant.groups.clear();
            if !dormant.mail.is_empty() {
                dormant.mail.clear();
                p.ops.push(Op::UpdatePerson {
                    name: name.to_string(),
                    display_name: dormant.display_name.clone(),
                    mail: Vec::new(),
                });
            }
            kept.push(dormant);
            p.kept_persons.push(name.to_string());
        }
        kept
    }

    /// Create new (and recreated) persons, update kept ones; returns who needs credentials.
    fn persons(&self, p: &mut Plan) -> Vec<(String, CredentialKind)> {
        let mut enrol = Vec::new();
        for x in &self.next.persons {
            let name = x.name.value.as_str();
            match self
                .prev_persons
                .get(name)
                .filter(|o| o.credential == x.credential)
            {
                Some(old) => {
                    if old.display_name != x.display_name || old.mail != x.mail {
                        p.ops.push(Op::UpdatePerson {
                            name: name.to_string(),
                            display_name: x.display_name.clone(),
                            mail: x.mail.clone(),
                        });
                    }
                    p.kept_persons.push(name.to_string());
                }
                None => {
                    p.ops.push(Op::CreatePerson {
                        name: name.to_string(),
                        display_name: x.display_name.clone(),
                        mail: x.mail.clone(),
                    });
                    enrol.push((name.to_string(), x.credential));
                }
            }
        }
        enrol
    }

    /// Each group's members exactly.
    fn memberships(&self, p: &mut Plan) {
        for g in &self.next.groups {
            let group = g.name.value.as_str();
            let want = members_of(self.next, group);
            let existed = self.prev_groups.contains(group);
            // Deleted members left the group by themselves; recreated ones must rejoin.
            let had: Vec<String> = members_of(self.prev, group)
                .into_iter()
                .filter(|m| !p.replaced_persons.contains(m))
                .collect();
            if had == want && (existed || want.is_empty()) {
                continue;
            }
            p.ops.push(Op::SetMembers {
                group: group.to_string(),
                members: want,
            });
        }
    }

    fn clients(&self, p: &mut Plan) {
        let deleted_groups = self.deleted_groups();
        for c in &self.next.oauth2_clients {
            let name = c.name.value.as_str();
            let old = self
                .prev_clients
                .get(name)
                .filter(|o| o.public == c.public)
                .copied();
            if old.is_none() {
                p.ops.push(Op::CreateClient {
                    name: name.to_string(),
                    public: c.public,
                    display_name: c.display_name.clone(),
                    landing_url: c.landing_url.clone(),
                });
            }
            let cd = ClientDiff {
                client: name,
                old,
                new: c,
                deleted_groups: &deleted_groups,
            };
            cd.settings(&mut p.ops);
            cd.redirects(&mut p.ops);
            cd.scope_maps(&mut p.ops);
            cd.flags(&mut p.ops);
            cd.claim_maps(&mut p.ops);
            cd.image(&mut p.ops);
        }
    }
}

fn members_of(state: &KanidmState, group: &str) -> Vec<String> {
    let mut m: Vec<String> = state
        .persons
        .iter()
        .filter(|p| p.groups.iter().any(|g| g.value == group))
        .map(|p| p.name.value.clone())
        .collect();
    m.sort();
    m
}

/// One client from `old` (None: just created, with Kanidm's defaults) to `new`.
struct ClientDiff<'a> {
    client: &'a str,
    old: Option<&'a OAuth2Client>,
    new: &'a OAuth2Client,
    /// Kanidm already dropped these groups' scope and claim maps.
    deleted_groups: &'a BTreeSet<&'a str>,
}

impl ClientDiff<'_> {
    fn name(&self) -> String {
        self.client.to_string()
    }

    fn settings(&self, ops: &mut Vec<Op>) {
        let c = self.new;
        if let Some(o) = self.old
            && (o.display_name != c.display_name || o.landing_url != c.landing_url)
        {
            ops.push(Op::UpdateClient {
                name: self.name(),
                display_name: c.display_name.clone(),
                landing_url: c.landing_url.clone(),
            });
        }
    }

    fn redirects(&self, ops: &mut Vec<Op>) {
        let old_urls: BTreeSet<&String> = self
            .old
            .map(|o| o.redirect_urls.iter().collect())
            .unwrap_or_default();
        let new_urls: BTreeSet<&String> = self.new.redirect_urls.iter().collect();
        for u in old_urls.difference(&new_urls) {
            ops.push(Op::RemoveRedirect {
                client: self.name(),
                url: u.to_string(),
            });
        }
        for u in new_urls.difference(&old_urls) {
            ops.push(Op::AddRedirect {
                client: self.name(),
                url: u.to_string(),
            });
        }
        if self.old.is_some_and(|o| o.localhost_redirects) != self.new.localhost_redirects {
            ops.push(Op::LocalhostRedirects {
                client: self.name(),
                on: self.new.localhost_redirects,
            });
        }
    }

    fn scope_maps(&self, ops: &mut Vec<Op>) {
        let (old, c) = (self.old, self.new);
        for (sup, old_maps, new_maps) in [
            (false, old.map(|o| &o.scope_maps[..]), &c.scope_maps),
            (true, old.map(|o| &o.sup_scope_maps[..]), &c.sup_scope_maps),
        ] {
            let old_maps: BTreeMap<&str, &ScopeMap> = old_maps
                .unwrap_or_default()
                .iter()
                .map(|m| (m.group.value.as_str(), m))
                .collect();
            let wanted: BTreeSet<&str> = new_maps.iter().map(|m| m.group.value.as_str()).collect();
            for group in old_maps.keys() {
                if !wanted.contains(group) && !self.deleted_groups.contains(group) {
                    ops.push(Op::DeleteScopeMap {
                        client: self.name(),
                        group: group.to_string(),
                        sup,
                    });
                }
            }
            for m in new_maps {
                let group = m.group.value.as_str();
                let same = old_maps
                    .get(group)
                    .is_some_and(|o| scope_set(o) == scope_set(m));
                if !same || self.deleted_groups.contains(group) {
                    ops.push(Op::SetScopeMap {
                        client: self.name(),
                        group: group.to_string(),
                        scopes: m.scopes.iter().map(|s| s.value.clone()).collect(),
                        sup,
                    });
                }
            }
        }
    }

    fn flags(&self, ops: &mut Vec<Op>) {
        let (old, c) = (self.old, self.new);
        if old.is_some_and(|o| o.legacy_crypto) != c.legacy_crypto {
            ops.push(Op::LegacyCrypto {
                client: self.name(),
                on: c.legacy_crypto,
            });
        }
        if old.is_some_and(|o| o.prefer_short_username) != c.prefer_short_username {
            ops.push(Op::PreferShortUsername {
                client: self.name(),
                on: c.prefer_short_username,
            });
        }
    }

    fn claim_maps(&self, ops: &mut Vec<Op>) {
        let old_claims: Vec<_> = self
            .old
            .map(|o| o.claim_maps.iter().map(claim_key).collect())
            .unwrap_or_default();
        let new_claims: Vec<_> = self.new.claim_maps.iter().map(claim_key).collect();
        if old_claims == new_claims {
            return;
        }
        let pairs: BTreeSet<(String, String)> = old_claims
            .iter()
            .filter(|k| !self.deleted_groups.contains(k.1.as_str()))
            .map(|k| (k.0.clone(), k.1.clone()))
            .collect();
        for (claim, group) in pairs {
            ops.push(Op::DeleteClaimMap {
                client: self.name(),
                claim,
                group,
            });
        }
        for (claim, group, values, join) in new_claims {
            ops.push(Op::SetClaimMap {
                client: self.name(),
                claim,
                group,
                values,
                join,
            });
        }
    }

    fn image(&self, ops: &mut Vec<Op>) {
        if self.old.and_then(|o| o.image.as_deref()) != self.new.image.as_deref() {
            ops.push(match &self.new.image {
                Some(file) => Op::SetImage {
                    client: self.name(),
                    file: file.clone(),
                },
                None => Op::DeleteImage {
                    client: self.name(),
                },
            });
        }
    }
}

fn scope_set(m: &ScopeMap) -> BTreeSet<&str> {
    m.scopes.iter().map(|s| s.value.as_str()).collect()
}

fn claim_key(m: &ClaimMap) -> (String, String, Vec<String>, Option<ClaimJoin>) {
    (
        m.claim.value.clone(),
        m.group.value.clone(),
        m.values.clone(),
        m.join,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str) -> KanidmState {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(format!("{name}.yaml"));
        crate::scenario::load_file(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .scenario
            .kanidm
    }

    fn ops(from: &str, to: &str) -> Plan {
        plan(Some(&state(from)), &state(to)).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"))
    }

    #[test]
    fn the_same_state_needs_no_writes() {
        for s in ["post1-structured", "post2-user-binding", "post2-passkey"] {
            let p = ops(s, s);
            assert!(p.ops.is_empty(), "{s}: {:?}", p.ops);
            assert!(p.replaced_persons.is_empty() && !p.deleted_entries);
        }
    }

    #[test]
    fn a_fresh_server_gets_everything_in_dependency_order() {
        let p = plan(None, &state("post1-structured")).unwrap();
        let pos = |want: &Op| {
            p.ops
                .iter()
                .position(|o| o == want)
                .unwrap_or_else(|| panic!("{want:?} not in {:?}", p.ops))
        };
        let group = pos(&Op::CreateGroup("k8s_users".into()));
        let members = pos(&Op::SetMembers {
            group: "k8s_users".into(),
            members: vec!["alice".into()],
        });
        let enrol = pos(&Op::Enrol("alice".into(), CredentialKind::PasswordTotp));
        let client = pos(&Op::CreateClient {
            name: "k8s".into(),
            public: true,
            display_name: "Kubernetes".into(),
            landing_url: "https://kubernetes.io/".into(),
        });
        let map = pos(&Op::SetScopeMap {
            client: "k8s".into(),
            group: "k8s_admins".into(),
            scopes: vec![
                "openid".into(),
                "email".into(),
                "profile".into(),
                "groups".into(),
            ],
            sup: false,
        });
        assert!(group < members && members < enrol && enrol < client && client < map);
        assert!(p.ops.contains(&Op::LocalhostRedirects {
            client: "k8s".into(),
            on: true
        }));
        // Kanidm's defaults are not written again.
        assert!(!p.ops.iter().any(|o| matches!(
            o,
            Op::LegacyCrypto { on: false, .. } | Op::PreferShortUsername { on: false, .. }
        )));
    }

    #[test]
    fn the_legacy_crypto_fix_is_one_write() {
        assert_eq!(
            ops("post2-as-written", "post2-fix-legacy-crypto").ops,
            [Op::LegacyCrypto {
                client: "k8s".into(),
                on: true
            }]
        );
        assert_eq!(
            ops("post2-fix-legacy-crypto", "post2-fix-signing-algs").ops,
            [Op::LegacyCrypto {
                client: "k8s".into(),
                on: false
            }]
        );
    }

    #[test]
    fn a_changed_credential_kind_recreates_the_person_and_rejoins_their_groups() {
        let p = ops("post2-fix-signing-algs", "post2-passkey");
        assert_eq!(p.replaced_persons, ["datosh"]);
        assert!(p.deleted_entries);
        assert_eq!(
            p.ops,
            [
                Op::DeletePerson("datosh".into()),
                Op::CreatePerson {
                    name: "datosh".into(),
                    display_name: "Fabian Kammel".into(),
                    mail: vec!["fabian@example.com".into()],
                },
                Op::SetMembers {
                    group: "k8s_users".into(),
                    members: vec!["datosh".into()],
                },
                Op::Enrol("datosh".into(), CredentialKind::Passkey),
            ]
        );
    }

    #[test]
    fn people_not_mentioned_stay_in_no_group_and_deleted_groups_take_their_maps() {
        let p = ops("post1-structured", "post2-as-written");
        // alice and bob stay (their sign-in survives), in no group.
        for who in ["alice", "bob"] {
            assert!(p.kept_persons.iter().any(|k| k == who));
            let dormant = p
                .server_state
                .persons
                .iter()
                .find(|x| x.name.value == who)
                .unwrap();
            assert!(dormant.groups.is_empty());
        }
        assert!(!p.ops.iter().any(|o| matches!(o, Op::DeletePerson(_))));
        // Mail is unique in Kanidm: a dormant person gives theirs up.
        assert!(p.ops.contains(&Op::UpdatePerson {
            name: "alice".into(),
            display_name: "Alice Example".into(),
            mail: vec![],
        }));
        assert!(p.ops.contains(&Op::DeleteGroup("k8s_admins".into())));
        assert!(p.ops.contains(&Op::SetMembers {
            group: "k8s_users".into(),
            members: vec!["datosh".into()],
        }));
        // Kanidm drops the k8s_admins map with the group: deleting it again would 404.
        assert!(!p.ops.iter().any(|o| matches!(
            o,
            Op::DeleteScopeMap { group, .. } if group == "k8s_admins"
        )));
        // And the way back puts alice back into k8s_users and bob into k8s_admins.
        let back = plan(Some(&p.server_state), &state("post1-structured")).unwrap();
        assert!(back.ops.contains(&Op::SetMembers {
            group: "k8s_admins".into(),
            members: vec!["bob".into()],
        }));
        assert!(back.ops.contains(&Op::SetMembers {
            group: "k8s_users".into(),
            members: vec!["alice".into()],
        }));
        assert!(
            !back
                .ops
                .iter()
                .any(|o| matches!(o, Op::CreatePerson { .. }))
        );
    }

    #[test]
    fn client_settings_change_in_place() {
        let p = ops("post2-fix-signing-algs", "prefer-short-username");
        for want in [
            Op::UpdateClient {
                name: "k8s".into(),
                display_name: "Kubernetes".into(),
                landing_url: "https://kubernetes.io/".into(),
            },
            Op::RemoveRedirect {
                client: "k8s".into(),
                url: "http://localhost:8000".into(),
            },
            Op::PreferShortUsername {
                client: "k8s".into(),
                on: true,
            },
            Op::SetScopeMap {
                client: "k8s".into(),
                group: "k8s_users".into(),
                scopes: vec!["openid".into(), "profile".into(), "groups".into()],
                sup: false,
            },
        ] {
            assert!(p.ops.contains(&want), "{want:?} not in {:?}", p.ops);
        }
        assert!(!p.ops.iter().any(|o| matches!(o, Op::DeleteClient(_))));
        let img = ops("post2-user-binding", "post2-fix-signing-algs");
        assert!(img.ops.contains(&Op::DeleteImage {
            client: "k8s".into()
        }));
    }

    #[test]
    fn a_credential_policy_change_cannot_be_made_in_place() {
        let mut policy = state("post1-structured");
        policy.credential_type_minimum = Some(crate::scenario::model::CredentialTypeMinimum::Any);
        let err = plan(Some(&state("post1-structured")), &policy).unwrap_err();
        assert!(err.contains("credential policy"), "{err}");
        // A fresh server simply gets it.
        let fresh = plan(None, &policy).unwrap();
        assert_eq!(fresh.ops[0], Op::CredentialPolicy("any"));
    }

    #[test]
    fn each_op_reads_as_the_kanidm_cli_line_the_posts_typed() {
        let p = plan(None, &state("post1-structured")).unwrap();
        let text: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
        let text = text.join("\n");
        for want in [
            "kanidm group create k8s_users",
            "kanidm person create alice 'Alice Example'",
            "kanidm group set-members k8s_users alice",
            "kanidm system oauth2 create-public k8s Kubernetes https://kubernetes.io/",
            "kanidm system oauth2 enable-localhost-redirects k8s",
            "kanidm system oauth2 update-scope-map k8s k8s_users openid email profile groups",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(
            !text.contains("Lab-"),
            "no generated password is ever shown"
        );
        let join = Op::SetClaimMap {
            client: "k8s".into(),
            claim: "roles".into(),
            group: "g".into(),
            values: vec!["a b".into()],
            join: Some(ClaimJoin::Csv),
        };
        assert_eq!(
            join.to_string(),
            "kanidm system oauth2 update-claim-map k8s roles g 'a b'\nkanidm system oauth2 update-claim-map-join k8s roles csv"
        );
    }
}
