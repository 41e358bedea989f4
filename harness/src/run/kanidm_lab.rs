//! The run's Kanidm: one server, brought from scenario to scenario in place (or started
//! afresh when a change cannot be made in place), with the sign-ins and tokens that stay
//! valid for its current state. `labkit` starts its Kanidm through the same functions.

use crate::cluster::KanidmPlacement;
use crate::kanidm::KanidmSource;
use crate::kanidm::container::{ContainerKanidm, ContainerNet};
use crate::kanidm::events;
use crate::kanidm::reconcile::{self, Desired, Previous};
use crate::kanidm::server::{LocalKanidm, check_version};
use crate::kanidm::{KanidmServer, Provisioned, admin, plan, readback};
use crate::login::flow::LoginOutcomeActual;
use crate::login::signins::SignIns;
use crate::pki::LabPki;
use crate::progress::Progress;
use crate::render::LabFacts;
use crate::scenario::LoadedScenario;
use crate::scenario::model::{Change, KanidmState};
use crate::scenario::steps::{self, StepOp, StepPlan};
use crate::timings::Timings;
use crate::tools;
use anyhow::{Result, anyhow};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Which Kanidm the local backend runs when none is named: a kanidmd binary if one is
/// found, else the Kanidm image if a Docker engine is there.
/// `on_host`: Kanidm runs on this host's loopback (local backend), not in a kind node.
pub fn default_source(on_host: bool, default_image: &str) -> Result<KanidmSource> {
    if on_host && let Some(found) = tools::KANIDMD.find() {
        return Ok(KanidmSource::Binary(found.path));
    }
    if !on_host || tools::docker_socket_present() {
        return Ok(KanidmSource::Image(default_image.to_string()));
    }
    Err(anyhow!(
        "no Kanidm to run: no kanidmd binary and no Docker engine\n  help: {}",
        tools::KANIDMD.how_to_get
    ))
}

fn binary_in_node(p: &Path) -> anyhow::Error {
    anyhow!(
        "the kind backend runs Kanidm as a container in the node, not the binary {}\n  help: give --kanidm-image <image> (README: \"Kanidm images\")",
        p.display()
    )
}

/// Fail early when `source` cannot run on this backend or its image is missing.
pub async fn check_source(on_host: bool, source: &KanidmSource) -> Result<()> {
    match source {
        KanidmSource::Binary(p) if !on_host => Err(binary_in_node(p)),
        KanidmSource::Binary(p) if !tools::is_executable(p) => {
            Err(anyhow!("kanidmd {} is not an executable file", p.display()))
        }
        KanidmSource::Binary(_) => Ok(()),
        KanidmSource::Image(image) => {
            crate::kanidm::container::split_image(image)?;
            crate::cluster::kind::ensure_image(image, "Kanidm", "--kanidm-image <image>").await
        }
    }
}

/// Start Kanidm where the backend needs it and check it is a release line we support.
/// `reuse_port`: the port of the server this one replaces, tried first by a local process
/// (another one is picked if it was taken meanwhile).
pub async fn start_server(
    dir: &Path,
    pki: &LabPki,
    http: &reqwest::Client,
    (placement, reuse_port): (&KanidmPlacement, Option<u16>),
    source: &KanidmSource,
) -> Result<KanidmServer> {
    std::fs::create_dir_all(dir)?;
    let mut server = match (placement, source) {
        (KanidmPlacement::HostLoopback, KanidmSource::Binary(bin)) => {
            let mut first = reuse_port;
            let ports = move || match first.take() {
                Some(p) => Ok(p),
                None => crate::process::free_port(),
            };
            KanidmServer::Local(LocalKanidm::start(bin, dir, pki, http, ports).await?)
        }
        (KanidmPlacement::HostLoopback, KanidmSource::Image(image)) => {
            let net = ContainerNet::HostLoopback {
                port: crate::process::free_port()?,
            };
            KanidmServer::Container(ContainerKanidm::start(dir, pki, http, &net, image).await?)
        }
        (KanidmPlacement::ContainerInNode { node, port }, KanidmSource::Image(image)) => {
            let net = ContainerNet::Node {
                node: node.clone(),
                port: *port,
            };
            KanidmServer::Container(ContainerKanidm::start(dir, pki, http, &net, image).await?)
        }
        (KanidmPlacement::ContainerInNode { .. }, KanidmSource::Binary(p)) => {
            return Err(binary_in_node(p));
        }
    };
    if let Err(e) = check_version(server.version()) {
        server.stop().await;
        return Err(e);
    }
    Ok(server)
}

/// `idm_admin` on a fresh server, and the scenario's state provisioned and verified.
pub async fn provision_fresh(
    server: &KanidmServer,
    s: &LoadedScenario,
    http: &reqwest::Client,
) -> Result<(kanidm_client::KanidmClient, Provisioned)> {
    let pw = server.recover_account("idm_admin").await?;
    let kc = admin::admin_client(server.endpoint(), &pw).await?;
    let provisioned = reconcile::provision(&kc, &Desired::of(s), http, server.endpoint()).await?;
    Ok((kc, provisioned))
}

/// Equal fingerprints = the same Kanidm state and login settings: the server and the tokens
/// it issued can be reused. Taken from the typed model (positions in the file do not count).
pub fn fingerprint(s: &LoadedScenario) -> String {
    serde_json::to_string(&(&s.scenario.kanidm, &s.scenario.login))
        .unwrap_or_else(|e| format!("unserialisable: {e}"))
}

pub struct KanidmLab {
    pub server: KanidmServer,
    admin: kanidm_client::KanidmClient,
    /// The state the server is in now, and its fingerprint.
    state: KanidmState,
    pub fingerprint: String,
    pub provisioned: Provisioned,
    /// Why the next scenario must start a fresh Kanidm (a step changed it beyond its
    /// state: expiry, sessions, keys, a stop).
    pub dirty: Option<String>,
    /// Login results per Kanidm state (fingerprint → person → outcome); cleared when an
    /// entry a token could refer to is deleted.
    pub tokens: BTreeMap<String, BTreeMap<String, LoginOutcomeActual>>,
    /// People's Kanidm sign-ins, kept so later logins are single sign-on.
    pub signins: SignIns,
    /// When tokens were last presented to the API server (the end of a scenario's checks).
    pub last_token_use: Option<Instant>,
    /// Which server of the run this is (a fresh one gets a new number).
    pub instance: u64,
}

/// Numbers Kanidm servers within the process, so API servers prepared against one are
/// never used against another.
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl KanidmLab {
    /// What renderers need: placeholder values of this server, the lab CA, and where the
    /// API server reads that CA.
    pub fn facts(&self, ca_pem: &str, ca_path_for_apiserver: String) -> LabFacts {
        LabFacts {
            values: self.provisioned.placeholder_values(self.server.endpoint()),
            ca_pem: ca_pem.to_string(),
            ca_path_for_apiserver,
        }
    }

    /// Whether `next` will most likely run on this very server, changed in place, with every
    /// OAuth2 client it names already served (an API server started now for it finds its
    /// issuers' discovery documents). A guess for starting API servers ahead, never for
    /// correctness: [`prepare`] decides, and the run discards what was prepared for a
    /// server that was replaced.
    pub fn likely_serves(&self, next: &LoadedScenario, fresh_kanidm: bool) -> bool {
        let state = &next.scenario.kanidm;
        self.dirty.is_none()
            && !(fresh_kanidm && self.fingerprint != fingerprint(next))
            && plan::in_place_blocker(&self.state, state).is_none()
            && state.oauth2_clients.iter().all(|c| {
                self.state
                    .oauth2_clients
                    .iter()
                    .any(|have| have.name.value == c.name.value)
            })
    }

    /// The login results already obtained in the current state.
    pub fn current_tokens(&self) -> Option<&BTreeMap<String, LoginOutcomeActual>> {
        self.tokens.get(&self.fingerprint)
    }

    pub async fn stop(&mut self, logs: &Path, versions: &mut BTreeMap<String, String>) {
        self.signins.close().await;
        if let Some(v) = self.server.version() {
            versions.insert("kanidmd".into(), v.to_string());
        }
        self.server.stop().await;
        let _ = std::fs::create_dir_all(logs);
        if let Some(parent) = self.server.log().parent().and_then(|p| p.file_name()) {
            let _ = std::fs::copy(
                self.server.log(),
                logs.join(format!("{}-kanidmd.log", parent.to_string_lossy())),
            );
        }
    }

    /// Reconcile the running Kanidm to the scenario; returns how long it took and a note.
    async fn change_in_place(
        &mut self,
        s: &LoadedScenario,
        fp: String,
        http: &reqwest::Client,
    ) -> Result<(Duration, String)> {
        self.change_to(Desired::of(s), fp, http).await
    }

    /// Reconcile the running Kanidm to `want`.
    async fn change_to(
        &mut self,
        want: Desired<'_>,
        fp: String,
        http: &reqwest::Client,
    ) -> Result<(Duration, String)> {
        let t = Instant::now();
        let prev = Previous {
            state: &self.state,
            provisioned: &self.provisioned,
        };
        let applied =
            reconcile::reconcile(&self.admin, Some(prev), &want, http, self.server.endpoint())
                .await?;
        for p in &applied.replaced_persons {
            self.signins.forget(p).await;
        }
        if applied.deleted_entries {
            self.tokens.clear();
        }
        self.state = applied.server_state;
        self.fingerprint = fp;
        self.provisioned = applied.provisioned;
        readback::ensure_matches(want.state, &self.provisioned, self.server.endpoint())?;
        let recreated = if applied.replaced_persons.is_empty() {
            String::new()
        } else {
            format!(
                ", recreated {} (credential kind changed)",
                applied.replaced_persons.join(", ")
            )
        };
        let people = self.signins.people();
        let kept = if people.is_empty() {
            "none".to_string()
        } else {
            people.join(", ")
        };
        Ok((
            t.elapsed(),
            format!(
                "Kanidm changed in place ({} write(s){recreated}); signed in: {kept}",
                applied.changes
            ),
        ))
    }
}

impl KanidmLab {
    /// A step's changes, in the order written: consecutive state changes are planned and
    /// reconciled together, events run on the server, renames re-key what we hold.
    /// Returns a note for the progress line.
    pub async fn apply_step(
        &mut self,
        p: &StepPlan<'_>,
        dir: &Path,
        http: &reqwest::Client,
    ) -> Result<String> {
        let mut done = Vec::new();
        let step_fp = format!("{}#{}", self.fingerprint, p.step.name.value);
        // Until the step has gone through, the server is in no known state: a step that
        // fails half-way must not hand its Kanidm to the next scenario.
        let before = self.dirty.replace(format!(
            "step `{}` did not finish changing Kanidm",
            p.step.name.value
        ));
        for op in steps::ops(&self.state, p.step).map_err(|e| anyhow!("{e}"))? {
            match op {
                StepOp::Reconcile(next) => {
                    let (_, note) = self
                        .change_to(Desired { state: &next, dir }, step_fp.clone(), http)
                        .await?;
                    done.push(note);
                }
                StepOp::Event(ch) => {
                    self.event(ch, http).await?;
                    done.push(events::cli_lines(ch).join("; "));
                }
            }
        }
        self.fingerprint = step_fp;
        self.dirty = before;
        if !p.events.is_empty() || !p.kanidm_running {
            self.dirty = Some(format!(
                "step `{}` changed Kanidm beyond its state (events or a stop)",
                p.step.name.value
            ));
        }
        Ok(done.join("; "))
    }

    async fn event(&mut self, ch: &Change, http: &reqwest::Client) -> Result<()> {
        match ch {
            Change::StopKanidm => {
                self.signins.close().await;
                self.server.pause().await
            }
            Change::StartKanidm => self.server.resume(http).await,
            Change::RenamePerson { person, to } => {
                let endpoint = self.server.endpoint().clone();
                events::execute(&self.admin, ch, http, |c| endpoint.jwks_url(c)).await?;
                self.rename(&person.value, &to.value).await;
                Ok(())
            }
            Change::RevokeSessions { person } => {
                let name = person.value.as_str();
                let secrets = self
                    .provisioned
                    .secrets
                    .get(name)
                    .ok_or_else(|| anyhow!("no credentials for {name}"))?;
                // Only the person may revoke their sessions; an expired or locked person
                // cannot log in to do it, and Kanidm already refuses every session of an
                // account outside its validity (refresh included).
                match crate::kanidm::admin::person_client(self.server.endpoint(), name, secrets)
                    .await
                {
                    Ok(as_person) => {
                        let n = events::revoke_sessions(&as_person, name).await?;
                        tracing::debug!(person = name, revoked = n, "sessions revoked");
                    }
                    Err(e) if format!("{e:#}").contains("AuthenticationFailed") => {
                        tracing::info!(
                            person = name,
                            "{name} cannot log in (expired or locked): Kanidm lets only the person revoke their sessions, and refuses an invalid account's sessions anyway"
                        );
                    }
                    Err(e) => return Err(e),
                }
                // Their Kanidm sign-in is gone: the next login walks the pages again.
                self.signins.forget(&person.value).await;
                Ok(())
            }
            _ => {
                let endpoint = self.server.endpoint().clone();
                events::execute(&self.admin, ch, http, |c| endpoint.jwks_url(c)).await
            }
        }
    }

    /// What we hold about a person, under their new name.
    async fn rename(&mut self, old: &str, new: &str) {
        let mut next = self.state.clone();
        if steps::apply(
            &mut next,
            &Change::RenamePerson {
                person: spanned(old),
                to: spanned(new),
            },
        )
        .is_ok()
        {
            self.state = next;
        }
        let p = &mut self.provisioned;
        if let Some(v) = p.secrets.remove(old) {
            p.secrets.insert(new.to_string(), v);
        }
        if let Some(v) = p.uuids.remove(old) {
            p.uuids.insert(new.to_string(), v);
        }
        for members in p.members.values_mut() {
            if members.remove(old) {
                members.insert(new.to_string());
            }
        }
        self.signins.forget(old).await;
    }
}

fn spanned(v: &str) -> serde_saphyr::Spanned<String> {
    serde_saphyr::Spanned {
        value: v.to_string(),
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

/// Where and how the run's Kanidm starts.
pub struct KanidmSite<'a> {
    pub lab: &'a super::lab::Lab,
    pub placement: KanidmPlacement,
    /// Which Kanidm (binary or image).
    pub source: KanidmSource,
    /// Never change Kanidm in place (`--fresh-kanidm`).
    pub fresh_kanidm: bool,
    /// The lab's kubelogin, when a scenario logs in through it.
    pub kubelogin: Option<crate::login::kubelogin::Kubelogin>,
}

async fn start_lab(
    s: &LoadedScenario,
    fp: String,
    site: &KanidmSite<'_>,
    (signins, reuse_port): (SignIns, Option<u16>),
    timings: &mut Timings,
    progress: &Progress,
) -> Result<KanidmLab> {
    let t = Instant::now();
    let lab = site.lab;
    let server = start_server(
        &lab.next_kanidm_dir(),
        &lab.pki,
        &lab.http,
        (&site.placement, reuse_port),
        &site.source,
    )
    .await?;
    timings.add("kanidm ready", t.elapsed());
    progress.step(&format!(
        "kanidmd {} ready at {}",
        server.version().unwrap_or_default(),
        server.endpoint().origin
    ));
    let t = Instant::now();
    let (admin, provisioned) = match provision_fresh(&server, s, &lab.http).await {
        Ok(x) => x,
        Err(e) => {
            let mut server = server;
            server.stop().await;
            return Err(e);
        }
    };
    timings.add("kanidm provisioning", t.elapsed());
    progress.step("Kanidm provisioned and read back");
    Ok(KanidmLab {
        server,
        admin,
        state: s.scenario.kanidm.clone(),
        fingerprint: fp,
        provisioned,
        dirty: None,
        tokens: BTreeMap::new(),
        signins,
        last_token_use: None,
        instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    })
}

/// The run's Kanidm in this scenario's state: unchanged, changed in place, or (first
/// scenario, or a change that cannot be made in place) a fresh server.
pub async fn prepare<'k>(
    s: &LoadedScenario,
    site: &KanidmSite<'_>,
    kanidm: &'k mut Option<KanidmLab>,
    timings: &mut Timings,
    progress: &Progress,
) -> Result<&'k mut KanidmLab> {
    let fp = fingerprint(s);
    let mut why_fresh = kanidm.as_ref().and_then(|k| {
        if let Some(d) = &k.dirty {
            Some(d.clone())
        } else if site.fresh_kanidm && k.fingerprint != fp {
            Some("--fresh-kanidm, and the Kanidm state differs".to_string())
        } else {
            plan::in_place_blocker(&k.state, &s.scenario.kanidm)
        }
    });
    if let Some(k) = kanidm.as_mut()
        && why_fresh.is_none()
    {
        if k.fingerprint == fp {
            progress.step("reusing Kanidm (same state as the previous scenario) and its tokens");
            return kanidm.as_mut().ok_or_else(|| anyhow!("no Kanidm server"));
        }
        match k.change_in_place(s, fp.clone(), &site.lab.http).await {
            Ok((took, note)) => {
                timings.add("kanidm changed in place", took);
                progress.step(&note);
                return kanidm.as_mut().ok_or_else(|| anyhow!("no Kanidm server"));
            }
            // The server is now somewhere between two states: never reuse it.
            Err(e) => why_fresh = Some(format!("changing it in place failed: {e:#}")),
        }
    }
    let mut signins = SignIns::default();
    let mut reuse_port = None;
    if let Some(mut old) = kanidm.take() {
        progress.step(&format!(
            "starting a fresh Kanidm: {}",
            why_fresh.unwrap_or_default()
        ));
        let origin = old.server.endpoint().origin.clone();
        signins = old.signins.hand_over(&origin).await;
        // The same port keeps the origin and so every issuer URL: an API server whose
        // authentication is unchanged stays (go-oidc fetches the new server's keys on the
        // first unknown key id), as on kind, where the port is the cluster's.
        reuse_port = old.server.port_to_reuse();
        old.stop(&site.lab.dir.join("logs"), &mut BTreeMap::new())
            .await;
    }
    *kanidm = Some(start_lab(s, fp, site, (signins, reuse_port), timings, progress).await?);
    kanidm.as_mut().ok_or_else(|| anyhow!("no Kanidm server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kanidmd_binary_cannot_go_into_a_kind_node_and_must_be_executable() {
        let e = check_source(false, &KanidmSource::Binary("/bin/true".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kanidm-image"), "{e}");
        let e = check_source(true, &KanidmSource::Binary("/nonexistent/kanidmd".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an executable file"), "{e}");
        assert!(
            check_source(true, &KanidmSource::Binary("/bin/true".into()))
                .await
                .is_ok()
        );
        assert!(
            check_source(true, &KanidmSource::Image("kanidm server".into()))
                .await
                .is_err()
        );
    }

    #[test]
    fn the_fingerprint_ignores_where_things_are_written_but_not_what() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let a = crate::scenario::load_file(&dir.join("post2-fix-signing-algs.yaml")).unwrap();
        let text = std::fs::read_to_string(&a.path).unwrap();
        // The same state further down the file (a longer comment header).
        let shifted =
            crate::scenario::load_str(&a.path, &format!("# one more line\n# and another\n{text}"))
                .unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&shifted));
        let b = crate::scenario::load_file(&dir.join("post2-fix-legacy-crypto.yaml")).unwrap();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
