//! The retry budget of a cluster: over a sliding window, retries may add at most
//! `ratio` of the requests plus `min_per_second` per second, so retries can never
//! multiply the load on a failing service. Over budget, the last failure is
//! returned instead of retrying.
//!
//! Configured with Envoy's `circuit_breakers.thresholds[].retry_budget`:
//! `budget_percent` is the ratio, `budget_interval` the window (10 s when 0 or
//! absent) and `min_retry_concurrency` the per-second floor (Remora counts retries
//! over the window, as Linkerd does, rather than concurrent retries). The state is
//! the cluster's and survives config changes.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Buckets the window is divided into.
const BUCKETS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    pub ratio: f64,
    pub min_per_second: u32,
    pub window: Duration,
}

impl BudgetConfig {
    /// Envoy's default `budget_percent` (20%) and `min_retry_concurrency` (3), over
    /// 10 s.
    pub const DEFAULT: BudgetConfig = BudgetConfig {
        ratio: 0.2,
        min_per_second: 3,
        window: Duration::from_secs(10),
    };
}

#[derive(Debug)]
pub struct RetryBudget {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    /// Index of the newest bucket, counted in bucket widths since `start`.
    newest: u64,
    /// `(requests, retries)` per bucket, ring-indexed by bucket number.
    counts: [(u64, u64); BUCKETS],
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl RetryBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            window: Mutex::new(Window {
                start: now,
                newest: 0,
                counts: [(0, 0); BUCKETS],
            }),
        }
    }

    /// Counts an original request.
    pub fn deposit(&self, config: &BudgetConfig, now: Instant) {
        let mut w = self.lock();
        w.advance(config, now);
        w.newest_bucket().0 += 1;
    }

    /// Takes one retry from the budget; false when the budget is spent.
    pub fn try_withdraw(&self, config: &BudgetConfig, now: Instant) -> bool {
        let mut w = self.lock();
        w.advance(config, now);
        let (requests, retries) = w.totals();
        let allowed = config.ratio * requests as f64
            + f64::from(config.min_per_second) * config.window.as_secs_f64();
        if (retries + 1) as f64 > allowed {
            return false;
        }
        w.newest_bucket().1 += 1;
        true
    }

    /// `(requests, retries)` in the window.
    pub fn totals(&self, config: &BudgetConfig, now: Instant) -> (u64, u64) {
        let mut w = self.lock();
        w.advance(config, now);
        w.totals()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Window {
    fn width(config: &BudgetConfig) -> Duration {
        (config.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    /// Moves the window to `now`, emptying the buckets that fell out of it.
    fn advance(&mut self, config: &BudgetConfig, now: Instant) {
        let width = Self::width(config).as_nanos();
        let current = (now.saturating_duration_since(self.start).as_nanos() / width) as u64;
        if current <= self.newest {
            return;
        }
        let stale = (current - self.newest).min(BUCKETS as u64);
        for i in 1..=stale {
            self.counts[((self.newest + i) % BUCKETS as u64) as usize] = (0, 0);
        }
        self.newest = current;
    }

    fn newest_bucket(&mut self) -> &mut (u64, u64) {
        &mut self.counts[(self.newest % BUCKETS as u64) as usize]
    }

    fn totals(&self) -> (u64, u64) {
        self.counts
            .iter()
            .fold((0, 0), |(a, b), (r, t)| (a + r, b + t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BudgetConfig = BudgetConfig {
        ratio: 0.2,
        min_per_second: 1,
        window: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_ratio_plus_floor() {
        let budget = RetryBudget::new(Instant::now());
        let mut granted = 0;
        // 100 requests per second for 30 s, each wanting a retry.
        for _ in 0..30 {
            for _ in 0..100 {
                budget.deposit(&CONFIG, Instant::now());
                if budget.try_withdraw(&CONFIG, Instant::now()) {
                    granted += 1;
                }
            }
            let (requests, retries) = budget.totals(&CONFIG, Instant::now());
            assert!(
                retries as f64 <= 0.2 * requests as f64 + 10.0,
                "{retries} of {requests}"
            );
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // 20% of 3000, plus at most the 10-retry floor per window.
        assert!((600..=630).contains(&granted), "{granted}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_at_low_rates_and_the_window_forgets() {
        let budget = RetryBudget::new(Instant::now());
        let floor: usize = (0..20)
            .filter(|_| budget.try_withdraw(&CONFIG, Instant::now()))
            .count();
        assert_eq!(floor, 10, "1 per second over 10 s");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            budget.try_withdraw(&CONFIG, Instant::now()),
            "the window moved on"
        );
    }
}
