//! Wait for events by polling a condition, never by sleeping a fixed time.

use std::future::Future;
use std::time::Duration;

/// How often [`wait_for`] and the addresses-file polling look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A condition did not hold within its timeout.
#[derive(Debug, thiserror::Error)]
#[error("condition not met within {timeout:?} ({attempts} checks)")]
pub struct WaitTimeout {
    pub timeout: Duration,
    pub attempts: u64,
}

/// Poll `condition` every ~20 ms until it returns true, or fail after `timeout`.
/// The condition is always checked at least once, and once more at the deadline.
///
/// ```no_run
/// # async fn f(proxy: &remora_tests::harness::Proxy) -> anyhow::Result<()> {
/// use std::time::Duration;
/// remora_tests::harness::wait_for(Duration::from_secs(5), || async {
///     proxy.admin_get("/ready").await.map(|r| r.status == 200).unwrap_or(false)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> Result<(), WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_some(timeout, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await
}

/// Poll `probe` every ~20 ms until it returns `Some(value)`, and return the value;
/// fail after `timeout`.
pub async fn wait_for_some<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Some(value) = probe().await {
            return Ok(value);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(WaitTimeout { timeout, attempts });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_as_soon_as_the_condition_holds() {
        let calls = AtomicU32::new(0);
        wait_for(Duration::from_secs(1), || async {
            calls.fetch_add(1, Ordering::SeqCst) >= 2
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn times_out_with_a_clear_error() {
        let err = wait_for(Duration::from_millis(100), || async { false })
            .await
            .unwrap_err();
        assert_eq!(err.timeout, Duration::from_millis(100));
        assert!(err.attempts >= 5, "{err}");
        assert!(err.to_string().contains("100ms"), "{err}");
    }

    #[tokio::test]
    async fn wait_for_some_returns_the_value() {
        let mut n = 0;
        let v = wait_for_some(Duration::from_secs(1), || {
            n += 1;
            let seen = n;
            async move { (seen == 4).then_some(seen * 10) }
        })
        .await
        .unwrap();
        assert_eq!(v, 40);
    }
}
