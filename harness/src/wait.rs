//! The one wait primitive: poll until a probe says done, with a wall-clock deadline whose
//! error the caller words (what was awaited, where to look).

use anyhow::Result;
use std::future::Future;
use std::time::{Duration, Instant};

/// Poll `probe` every `every` until it returns `Ok(Some(v))`. `Ok(None)` means "not yet";
/// `Err` aborts at once (a child died, a server refused). After `deadline` the result is
/// `timed_out(elapsed)`. The probe always runs at least once.
pub async fn until<T, F, Fut>(
    deadline: Duration,
    every: Duration,
    mut probe: F,
    timed_out: impl FnOnce(Duration) -> anyhow::Error,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            return Err(timed_out(elapsed));
        }
        tokio::time::sleep(every.min(deadline - elapsed)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_probe_value_stops_on_errors_and_times_out() {
        let mut n = 0;
        let v = until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let done = n == 3;
                async move { Ok(done.then_some(n)) }
            },
            |_| anyhow::anyhow!("never"),
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
        let err = until::<(), _, _>(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || async { anyhow::bail!("child died") },
            |_| anyhow::anyhow!("never"),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "child died");
        let t = Instant::now();
        let err = until::<(), _, _>(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || async { Ok(None) },
            |after| anyhow::anyhow!("nothing after {} ms", after.as_millis() / 50 * 50),
        )
        .await
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(err.to_string(), "nothing after 50 ms");
    }
}
