//! The fixed loopback redirect ports belong to the machine, not to a run.
//!
//! kubelogin listens on 127.0.0.1:8000 and, when that is taken, on 18000; post 2 registers
//! `http://localhost:8000`. Two logins may share them (one on each port), but a third one
//! at that moment finds both in use and kubelogin gives up ("no available port"). That
//! happens as soon as scenarios run side by side: workers of one run, cells of a matrix,
//! or two runs on one machine. Every login that listens on a fixed port therefore holds one
//! machine-wide lock (an advisory lock on a file in the temporary directory, released
//! by the kernel when its holder exits, however it exits) from before it listens until
//! its redirect has come back.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::Duration;

/// How long a login waits for another login's fixed ports. A login through Kanidm's pages
/// takes 1–3 s here, and each one holding the lock has deadlines of its own.
pub const WAIT: Duration = Duration::from_secs(180);

/// Held while a login listens on a fixed redirect port; dropping it lets the next one in.
#[derive(Debug)]
pub struct PortsLock {
    _file: File,
}

fn lock_path() -> PathBuf {
    std::env::temp_dir().join("kanidm-lab-redirect-ports.lock")
}

fn open(path: &std::path::Path) -> Result<File> {
    let rw = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
    };
    match rw {
        Ok(f) => Ok(f),
        // Created by another user: a read-only descriptor locks the same file.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(path)
            .with_context(|| format!("opening the redirect ports lock {}", path.display())),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "opening the redirect ports lock {}",
            path.display()
        ))),
    }
}

/// Wait (at most [`WAIT`]) until no other login on this machine holds the fixed ports.
pub async fn take(why: &str) -> Result<PortsLock> {
    take_at(&lock_path(), why, WAIT).await
}

async fn take_at(path: &std::path::Path, why: &str, wait: Duration) -> Result<PortsLock> {
    let file = open(path)?;
    let held = &file;
    crate::wait::until(
        wait,
        Duration::from_millis(50),
        || async move {
            match held.try_lock() {
                Ok(()) => Ok(Some(())),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => Err(anyhow::Error::new(e)
                    .context(format!("locking the redirect ports ({})", path.display()))),
            }
        },
        |after| {
            anyhow::anyhow!(
                "{why}: another login held the fixed redirect ports (127.0.0.1:8000, 18000) for {} s\n  help: the lock is {}; a process holding it is another lab run (`cargo xtask clean` lists them)",
                after.as_secs(),
                path.display()
            )
        },
    )
    .await?;
    Ok(PortsLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_dropping_lets_the_next_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ports.lock");
        let first = take_at(&path, "first", Duration::from_secs(5))
            .await
            .unwrap();
        // A second holder (another open file, as another run would have) must wait.
        let err = take_at(&path, "second", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("second: another login held"),
            "{err:#}"
        );
        let waiting = tokio::spawn({
            let path = path.clone();
            async move { take_at(&path, "third", Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            !waiting.is_finished(),
            "the third waits while the first holds it"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(third.is_ok());
    }
}
