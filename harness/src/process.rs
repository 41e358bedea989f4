//! Child processes owned by a lab: logs to files, stopped on drop, never orphaned.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running server process. Dropping it kills it (SIGKILL); [`ManagedProcess::stop`]
/// asks politely first.
#[derive(Debug)]
pub struct ManagedProcess {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl ManagedProcess {
    /// Start `program args…` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        cwd: Option<&Path>,
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Own process group so Ctrl-C in the terminal reaches us, and we decide the order.
        cmd.process_group(0);
        die_with_parent(cmd.as_std_mut());
        let child = cmd.spawn().with_context(|| {
            format!(
                "starting {name} ({}); check the binary is executable",
                program.display()
            )
        })?;
        Ok(ManagedProcess {
            name: name.to_string(),
            log: log.to_path_buf(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Fail with the log tail if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited early ({status}); last log lines:\n{}",
                self.name,
                tail(&self.log, 15)
            );
        }
        Ok(())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            usage::record(&self.name, pid);
            // SAFETY: plain kill(2) on a pid we own.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            if tokio::time::timeout(grace, child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = child.kill().await;
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // The whole group: whatever the child started (Chromium's helpers, say) goes too.
            if let Some(pid) = child.id() {
                usage::record(&self.name, pid);
                // SAFETY: kill(2) on the process group this child leads (process_group(0)).
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
            let _ = child.start_kill();
        }
    }
}

/// What each kind of component cost, read from `/proc` just before it is stopped: for
/// `cargo xtask bench`'s breakdown ("kube-apiserver ×5: 11.2 s CPU").
pub mod usage {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Per component name: processes, CPU seconds (with their reaped children), largest peak RSS.
    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    pub struct Usage {
        pub processes: u32,
        pub cpu_secs: f64,
        pub peak_rss_bytes: u64,
    }

    static BY_NAME: Mutex<BTreeMap<String, Usage>> = Mutex::new(BTreeMap::new());

    /// utime + stime + cutime + cstime, in clock ticks, from a `/proc/<pid>/stat` line (the
    /// command name in parentheses may itself hold spaces and parentheses).
    pub fn cpu_ticks(stat: &str) -> Option<u64> {
        let after = stat.get(stat.rfind(')')? + 1..)?;
        let f: Vec<&str> = after.split_whitespace().collect();
        // After the name: state is field 3, utime 14 … cstime 17 (1-based over the line).
        (11..=14)
            .map(|i| f.get(i)?.parse::<u64>().ok())
            .sum::<Option<u64>>()
    }

    /// `VmHWM` (peak resident set) from `/proc/<pid>/status`, in bytes.
    pub fn peak_rss(status: &str) -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    }

    /// `root` and every process below it, breadth first, with `children_of` naming each
    /// one's children.
    pub fn tree(root: u32, children_of: impl Fn(u32) -> Vec<u32>) -> Vec<u32> {
        let mut found = vec![root];
        let mut i = 0;
        while let Some(&p) = found.get(i) {
            for c in children_of(p) {
                if !found.contains(&c) {
                    found.push(c);
                }
            }
            i += 1;
        }
        found
    }

    /// The live children of `pid`, from each of its threads' `children` list.
    fn children(pid: u32) -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|list| {
                list.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    /// Records `pid` and everything it started that still runs: a process's own figures
    /// count only the children it has reaped, and Chromium's renderers, say, run until the
    /// browser is killed.
    pub fn record(name: &str, pid: u32) {
        let stat_of = |p: u32| std::fs::read_to_string(format!("/proc/{p}/stat")).ok();
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let (mut ticks, mut peak, mut seen) = (0u64, 0u64, false);
        for p in tree(pid, children) {
            let Some(t) = stat_of(p).as_deref().and_then(cpu_ticks) else {
                continue;
            };
            seen = true;
            ticks += t;
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            peak = peak.max(peak_rss(&status).unwrap_or(0));
        }
        if !seen {
            return;
        }
        let mut all = BY_NAME.lock().unwrap_or_else(|e| e.into_inner());
        let u = all.entry(name.to_string()).or_default();
        u.processes += 1;
        u.cpu_secs += ticks as f64 / hz;
        u.peak_rss_bytes = u.peak_rss_bytes.max(peak);
    }

    /// Everything recorded so far, by component name.
    pub fn snapshot() -> BTreeMap<String, Usage> {
        BY_NAME.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_cpu_and_peak_rss_from_proc_lines() {
            let stat = "4242 (kube (api)server) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 12 0 1 2 3";
            assert_eq!(cpu_ticks(stat), Some(310));
            assert_eq!(cpu_ticks("garbage"), None);
            assert_eq!(peak_rss("Name:\tx\nVmHWM:\t  2048 kB\n"), Some(2 << 20));
            assert_eq!(peak_rss("Name:\tx\n"), None);
        }

        #[test]
        fn a_tree_holds_the_root_and_every_descendant() {
            // 10 started 11 and 12; 12 started 13; 20 is someone else's.
            let children = |p: u32| match p {
                10 => vec![11, 12],
                12 => vec![13],
                1 => vec![10, 20],
                _ => vec![],
            };
            assert_eq!(tree(10, children), vec![10, 11, 12, 13]);
            assert_eq!(tree(13, children), vec![13]);
        }

        #[test]
        fn a_live_child_is_found_under_the_harness() {
            let mut sleeper = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            let found = tree(std::process::id(), children);
            let _ = sleeper.kill();
            let _ = sleeper.wait();
            assert!(found.contains(&sleeper.id()), "{found:?}");
        }

        #[test]
        fn the_harness_itself_can_be_read() {
            let me = std::process::id();
            let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
            assert!(cpu_ticks(&stat).is_some());
        }
    }
}

/// The child gets SIGKILL when the harness dies, however it dies (`kill -9` included):
/// Linux's parent-death signal, set between fork and exec. If the harness is already gone
/// by then, the child exits at once instead of running orphaned.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (getpid is read before fork; prctl, getppid,
    // _exit) run in the child between fork and exec.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Go's collector off, up to a heap of `limit_mib`, for the Go programs a lab starts
/// (kube-apiserver, kubectl), unless the user set `GOGC` or `GOMEMLIMIT` themselves: those
/// programs live for seconds, and a fifth of kube-apiserver's start-up CPU went to the
/// collector (to `/readyz` 1.32 s → 1.04 s of CPU; kubectl 50 → 43 ms per run). Past the
/// limit the collector runs as usual, so a long-lived one stays near it.
pub fn go_collector_off(limit_mib: u32) -> Vec<(&'static str, String)> {
    let user_set = ["GOGC", "GOMEMLIMIT"]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
    go_collector_env(user_set, limit_mib)
}

fn go_collector_env(user_set: bool, limit_mib: u32) -> Vec<(&'static str, String)> {
    if user_set {
        return Vec::new();
    }
    vec![
        ("GOGC", "off".into()),
        ("GOMEMLIMIT", format!("{limit_mib}MiB")),
    ]
}

/// kube-apiserver's heap stays under ~200 MiB; a start allocates ~400 MiB of garbage.
pub const APISERVER_HEAP_MIB: u32 = 512;
/// A kubectl run (with kubelogin as its exec plugin) allocates a few tens of MiB.
pub const KUBECTL_HEAP_MIB: u32 = 256;

/// The last `n` lines of a log file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A free TCP port on 127.0.0.1 below Linux's ephemeral range (32768–60999), for a
/// listener in another network namespace (Kanidm's container in the kind node): there,
/// ports from the ephemeral range go to whatever listens on port 0 or connects out
/// (containerd's streaming server, say). Once, one took Kanidm's port in a node, and every
/// Kanidm container of that cluster then failed to bind (`AddrInUse`).
pub fn free_port_below_ephemeral() -> Result<u16> {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 10_000;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    (0..SPAN)
        // 7919 is prime, so the walk visits every port of the span once.
        .map(|i| FIRST + (seed.wrapping_add(i.wrapping_mul(7919))) % SPAN)
        .filter_map(|p| u16::try_from(p).ok())
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| anyhow::anyhow!("no free port between {FIRST} and {}", FIRST + SPAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_below_the_ephemeral_range_is_free_and_in_range() {
        let p = free_port_below_ephemeral().unwrap();
        assert!((20_000..30_000).contains(&p), "{p}");
        assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    }

    fn alive(pid: i32) -> bool {
        // Zombies count as gone: /proc/<pid>/stat's state is Z.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn the_collector_is_left_alone_when_the_user_tuned_it() {
        assert!(go_collector_env(true, 512).is_empty());
        assert_eq!(
            go_collector_env(false, 512),
            vec![("GOGC", "off".to_string()), ("GOMEMLIMIT", "512MiB".into())]
        );
    }

    #[tokio::test]
    async fn dropping_a_child_kills_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let p = ManagedProcess::spawn(
            "sh",
            Path::new("/bin/sh"),
            &["-c".into(), script],
            None,
            &[],
            &dir.path().join("sh.log"),
        )
        .unwrap();
        let grandchild: i32 = crate::wait::until(
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async {
                Ok(std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|t| t.trim().parse().ok()))
            },
            |_| anyhow::anyhow!("the shell never started its child"),
        )
        .await
        .unwrap();
        assert!(alive(grandchild));
        drop(p);
        let gone = crate::wait::until(
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async { Ok((!alive(grandchild)).then_some(())) },
            |_| anyhow::anyhow!("grandchild {grandchild} survived its group's kill"),
        )
        .await;
        assert!(gone.is_ok(), "{gone:?}");
    }
}
