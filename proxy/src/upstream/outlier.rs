//! Outlier detection (Envoy `outlier_detection`, consecutive failures): an endpoint
//! that fails `consecutive_failures` times in a row (5xx, connect failures,
//! resets) is ejected from its clusters' balancing for `base_ejection_time` times
//! the number of times it has been ejected (at most `max_ejection_time`). When the
//! time is up it is back on probation: its next attempt decides, a success clears
//! it, a failure ejects it again at once. A cluster never has more than
//! `max_ejection_percent` of its endpoints ejected (but always may eject one).
//!
//! The balancer reads one atomic per endpoint; the rest of the state is behind a
//! lock taken once per attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

impl OutlierConfig {
    /// Envoy's defaults.
    pub const DEFAULT: OutlierConfig = OutlierConfig {
        consecutive_failures: 5,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 10,
    };

    /// How many of `endpoints` may be ejected at once.
    pub fn max_ejected(&self, endpoints: usize) -> usize {
        (endpoints * self.max_ejection_percent as usize / 100).max(1)
    }
}

#[derive(Debug, Default)]
pub struct Outlier {
    /// Milliseconds after [`base`] until which the endpoint is ejected; 0 when not.
    ejected_until: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    times_ejected: u32,
    /// Back from an ejection and not yet proven healthy.
    probation: bool,
}

/// What recording an attempt's outcome decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Failed, but below the threshold.
    Failing,
    /// Should be ejected (if the cluster's limit allows).
    Eject,
}

/// The instant ejection times count from (the first use in this process).
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn millis(at: Instant) -> u64 {
    // +1 so that 0 always means "not ejected".
    at.saturating_duration_since(base()).as_millis() as u64 + 1
}

impl Outlier {
    /// Whether the endpoint is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && millis(now) < until
    }

    /// Records an attempt's outcome.
    pub fn record(&self, success: bool, config: &OutlierConfig, now: Instant) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if success {
            s.consecutive_failures = 0;
            if s.probation {
                s.probation = false;
                self.ejected_until.store(0, Ordering::Relaxed);
            }
            return Verdict::Healthy;
        }
        if self.is_ejected(now) {
            // A request that started before the ejection.
            return Verdict::Failing;
        }
        s.consecutive_failures += 1;
        if s.probation || s.consecutive_failures >= config.consecutive_failures {
            Verdict::Eject
        } else {
            Verdict::Failing
        }
    }

    /// Ejects the endpoint; returns for how long.
    pub fn eject(&self, config: &OutlierConfig, now: Instant) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.times_ejected = s.times_ejected.saturating_add(1);
        s.consecutive_failures = 0;
        s.probation = true;
        let time = config
            .base_ejection_time
            .saturating_mul(s.times_ejected)
            .min(config.max_ejection_time.max(config.base_ejection_time));
        self.ejected_until
            .store(millis(now + time), Ordering::Relaxed);
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: OutlierConfig = OutlierConfig {
        consecutive_failures: 3,
        base_ejection_time: Duration::from_secs(10),
        max_ejection_time: Duration::from_secs(25),
        max_ejection_percent: 50,
    };

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_for_growing_times_and_a_probe_decides() {
        let o = Outlier::default();
        let now = Instant::now;
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Failing);
        assert_eq!(
            o.record(true, &CONFIG, now()),
            Verdict::Healthy,
            "a success resets"
        );
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Failing);
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Failing);
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Eject);
        assert_eq!(o.eject(&CONFIG, now()), Duration::from_secs(10));
        assert!(o.is_ejected(now()));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!o.is_ejected(now()), "back on probation");
        // The probe fails: out again, for longer.
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Eject);
        assert_eq!(o.eject(&CONFIG, now()), Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(o.record(true, &CONFIG, now()), Verdict::Healthy);
        assert!(!o.is_ejected(now()));
        assert_eq!(
            o.record(false, &CONFIG, now()),
            Verdict::Failing,
            "a fresh start"
        );
        // The third ejection is capped at the maximum.
        o.record(false, &CONFIG, now());
        o.record(false, &CONFIG, now());
        assert_eq!(o.eject(&CONFIG, now()), Duration::from_secs(25));
    }

    #[test]
    fn at_least_one_endpoint_may_be_ejected() {
        assert_eq!(OutlierConfig::DEFAULT.max_ejected(3), 1);
        assert_eq!(CONFIG.max_ejected(10), 5);
    }
}
