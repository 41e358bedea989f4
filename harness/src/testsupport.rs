//! Shared by the integration tests that need real components.

/// Report a test that cannot run here (a real component is missing), loudly. With
/// `LAB_REQUIRE_REAL=1` a skip is a failure: the evidence runs use it so nothing passes by
/// not running.
pub fn skip(reason: &str) {
    if std::env::var("LAB_REQUIRE_REAL").is_ok_and(|v| v == "1") {
        panic!("LAB_REQUIRE_REAL=1, but this test cannot run: {reason}");
    }
    eprintln!("\n==== SKIPPED: {reason} ====\n");
}

/// `skipped!("needs {}", what)`: [`skip`] with a formatted reason.
#[macro_export]
macro_rules! skipped {
    ($($arg:tt)*) => {
        $crate::testsupport::skip(&format!($($arg)*))
    };
}

/// The check `scenario`/`check` of a run, or a panic that prints the whole report.
pub fn find_check<'r>(
    report: &'r crate::run::RunReport,
    scenario: &str,
    check: &str,
) -> &'r crate::check::CheckResult {
    report
        .results
        .iter()
        .find(|r| r.scenario == scenario && r.check == check)
        .unwrap_or_else(|| {
            panic!(
                "no {scenario}/{check} in:\n{}",
                crate::report::summary_table(&report.results)
            )
        })
}

/// The options of one real-component e2e run the tests share: Kubernetes 1.36 on the local
/// backend, the default Kanidm (`LAB_KANIDM_IMAGE` when set), the repository's kind
/// configs, nothing downloaded. Tests change what they test with `..e2e_options(…)`.
pub fn e2e_options(
    scenarios: Vec<crate::scenario::LoadedScenario>,
    artifacts: &std::path::Path,
) -> crate::run::E2eOptions {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    crate::run::E2eOptions {
        scenarios,
        k8s: vec![crate::render::K8sVersion::DEFAULT],
        kanidm: Vec::new(),
        default_kanidm_image: std::env::var("LAB_KANIDM_IMAGE")
            .unwrap_or_else(|_| crate::tools::DEFAULT_KANIDM_IMAGE.into()),
        backend: crate::cluster::Backend::Local,
        artifacts: artifacts.to_path_buf(),
        keep: false,
        fresh_kanidm: false,
        order_for_speed: false,
        kind: crate::cluster::kind::KindSettings {
            configs: root.join("kind-configs"),
            images: Default::default(),
        },
        places: crate::tools::Places::from_env(),
        fetch_missing: None,
        explain_check: false,
        // `LAB_JOBS=1` runs the suite one scenario at a time; unset: the machine's default.
        jobs: std::env::var("LAB_JOBS").ok().and_then(|v| v.parse().ok()),
    }
}

/// `lab up` of `s` on the local backend (Kubernetes 1.36), its kubeconfigs logging in
/// through `exe`'s exec plugin.
pub async fn local_lab(
    s: &crate::scenario::LoadedScenario,
    dir: &std::path::Path,
    exe: &std::path::Path,
) -> anyhow::Result<crate::labkit::RunningLab> {
    local_lab_with(s, dir, exe, false).await
}

/// [`local_lab`], its kubeconfigs through kubelogin (`true`, when found) or the built-in plugin.
pub async fn local_lab_with(
    s: &crate::scenario::LoadedScenario,
    dir: &std::path::Path,
    exe: &std::path::Path,
    kubelogin: bool,
) -> anyhow::Result<crate::labkit::RunningLab> {
    crate::labkit::up(
        s,
        dir,
        &crate::labkit::UpOptions {
            with_cluster: true,
            k8s: crate::render::K8sVersion::DEFAULT,
            backend: crate::cluster::Backend::Local,
            kind: Default::default(),
            kanidm: None,
            kubelogin,
        },
        exe,
    )
    .await
}

/// `pid`'s parent from `/proc/<pid>/stat`; None once it is gone or a zombie.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Is `pid` running (not gone, not a zombie)?
pub fn alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}

/// Every live descendant of `root` (children, their children, …), without `root`.
pub fn descendants(root: u32) -> std::collections::BTreeSet<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| Some((p, parent_of(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = std::collections::BTreeSet::from([root]);
    loop {
        let n = found.len();
        for (p, pp) in &parents {
            if found.contains(pp) {
                found.insert(*p);
            }
        }
        if found.len() == n {
            found.remove(&root);
            return found;
        }
    }
}

/// A loopback HTTP/1.1 file server standing in for a download mirror in tests of
/// `cargo xtask setup` (no network): it serves `files` by path, answers 404 otherwise, and
/// can cut a file short or stall in the middle of one.
pub mod mirror {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// How one path is served.
    #[derive(Clone)]
    pub enum Serve {
        Whole(Vec<u8>),
        /// Announce the whole length, send half, close the connection.
        CutShort(Vec<u8>),
        /// Announce the whole length, send half, then send nothing for a minute.
        Stall(Vec<u8>),
    }

    pub struct Mirror {
        pub url: String,
        pub files: Arc<Mutex<BTreeMap<String, Serve>>>,
    }

    impl Mirror {
        pub fn start() -> Mirror {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            let url = format!("http://{}", listener.local_addr().expect("local addr"));
            let files: Arc<Mutex<BTreeMap<String, Serve>>> = Arc::default();
            let served = files.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let files = served.clone();
                    std::thread::spawn(move || answer(stream, &files));
                }
            });
            Mirror { url, files }
        }

        pub fn put(&self, path: &str, serve: Serve) {
            if let Ok(mut f) = self.files.lock() {
                f.insert(path.to_string(), serve);
            }
        }

        pub fn remove(&self, path: &str) {
            if let Ok(mut f) = self.files.lock() {
                f.remove(path);
            }
        }

        /// `path` and `path.sha256` (a lone digest, as dl.k8s.io publishes it).
        pub fn put_with_sha256(&self, path: &str, body: Vec<u8>) {
            self.put(
                &format!("{path}.sha256"),
                Serve::Whole(sha256_hex(&body).into_bytes()),
            );
            self.put(path, Serve::Whole(body));
        }
    }

    pub fn sha256_hex(b: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    fn answer(mut stream: std::net::TcpStream, files: &Mutex<BTreeMap<String, Serve>>) {
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(clone);
        loop {
            let mut request = String::new();
            if reader.read_line(&mut request).unwrap_or(0) == 0 {
                return;
            }
            // Skip the headers.
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let serve = files.lock().ok().and_then(|f| f.get(&path).cloned());
            let (status, body, cut) = match serve {
                None => ("404 Not Found", b"not found".to_vec(), None),
                Some(Serve::Whole(b)) => ("200 OK", b, None),
                Some(Serve::CutShort(b)) => ("200 OK", b, Some(false)),
                Some(Serve::Stall(b)) => ("200 OK", b, Some(true)),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n\r\n",
                body.len()
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            match cut {
                None => {
                    if stream.write_all(&body).is_err() {
                        return;
                    }
                }
                Some(stall) => {
                    let _ = stream.write_all(&body[..body.len() / 2]);
                    let _ = stream.flush();
                    if stall {
                        std::thread::sleep(std::time::Duration::from_secs(60));
                    }
                    return;
                }
            }
        }
    }
}

/// `scenarios import`'s inputs for the posts' own files (`harness/tests/import/post{1,2}/`,
/// copied verbatim from the posts): post 1 with `$(whoami)` = alice; post 2's console blocks
/// and its two `--oidc-*` flags. `kubelogin_found` decides the login they import into.
pub fn post_import_inputs(post: u8, kubelogin_found: bool) -> crate::import::Inputs {
    use crate::explain::source::AuthSource;
    let fx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import");
    match post {
        1 => crate::import::Inputs {
            auth: Some((
                AuthSource::ConfigFile(fx.join("post1/auth-config.yaml")),
                "--auth-config auth-config.yaml".into(),
            )),
            rbac: vec![fx.join("post1/rbac.yaml")],
            kubeconfig: Some(fx.join("post1/kubeconfig-user.yaml")),
            kanidm_commands: Some(fx.join("post1/commands.sh")),
            set: [("whoami".to_string(), "alice".to_string())].into(),
            name: Some("post1-imported".into()),
            kubelogin_found,
            ..Default::default()
        },
        _ => crate::import::Inputs {
            auth: Some((
                AuthSource::Flags(
                    std::fs::read_to_string(fx.join("post2/oidc-flags.txt")).unwrap_or_default(),
                ),
                "--oidc-flags".into(),
            )),
            kanidm_commands: Some(fx.join("post2/transcript.txt")),
            name: Some("post2-imported".into()),
            kubelogin_found,
            ..Default::default()
        },
    }
}
