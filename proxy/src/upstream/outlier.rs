//! Outlier detection (Envoy `outlier_detection`, consecutive failures): an endpoint
//! that fails `consecutive_failures` times in a row (5xx, connect failures,
//! resets) is ejected from its clusters' balancing for `base_ejection_time` times
//! the number of times it has been ejected (at most `max_ejection_time`). When the
//! time is up it is back on probation: its next attempt decides, a success clears
//! it, a failure ejects it again at once. A cluster never has more than
//! `max_ejection_percent` of its endpoints ejected (but always may eject one).
//!
//! All of it is atomics: the balancer reads one per endpoint, and a success (the
//! common outcome, recorded for every attempt now that detection is on by
//! default) reads two and writes nothing unless there was something to clear.
//! Under concurrency "in a row" is approximate, as in Envoy; an ejection
//! happens once however many attempts see the threshold together.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
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
    consecutive_failures: AtomicU32,
    times_ejected: AtomicU32,
    /// Back from an ejection and not yet proven healthy.
    probation: AtomicBool,
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
        let until = self.ejected_until.load(Relaxed);
        until != 0 && millis(now) < until
    }

    /// Records an attempt's outcome.
    pub fn record(&self, success: bool, config: &OutlierConfig, now: Instant) -> Verdict {
        if success {
            self.succeeded(|| now);
            Verdict::Healthy
        } else {
            self.failed(config, now)
        }
    }

    /// Records a success; `now` is read only when the endpoint is on probation.
    /// A success while ejected (an attempt that began before) changes nothing.
    pub fn succeeded(&self, now: impl FnOnce() -> Instant) {
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
        if self.probation.load(Relaxed)
            && !self.is_ejected(now())
            && self.probation.swap(false, Relaxed)
        {
            self.ejected_until.store(0, Relaxed);
        }
    }

    /// Records a failure.
    pub fn failed(&self, config: &OutlierConfig, now: Instant) -> Verdict {
        if self.is_ejected(now) {
            // An attempt that began before the ejection.
            return Verdict::Failing;
        }
        let failures = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if self.probation.load(Relaxed) || failures >= config.consecutive_failures {
            Verdict::Eject
        } else {
            Verdict::Failing
        }
    }

    /// Ejects the endpoint; returns for how long, or `None` when it already is
    /// (another attempt got there first).
    pub fn eject(&self, config: &OutlierConfig, now: Instant) -> Option<Duration> {
        let until = self.ejected_until.load(Relaxed);
        if until != 0 && millis(now) < until {
            return None;
        }
        let times = self.times_ejected.load(Relaxed).saturating_add(1);
        let time = config
            .base_ejection_time
            .saturating_mul(times)
            .min(config.max_ejection_time.max(config.base_ejection_time));
        // Only one of the attempts that saw the threshold ejects.
        self.ejected_until
            .compare_exchange(until, millis(now + time), Relaxed, Relaxed)
            .ok()?;
        self.times_ejected.store(times, Relaxed);
        self.consecutive_failures.store(0, Relaxed);
        self.probation.store(true, Relaxed);
        Some(time)
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
        assert_eq!(o.eject(&CONFIG, now()), Some(Duration::from_secs(10)));
        assert!(o.is_ejected(now()));
        assert_eq!(o.eject(&CONFIG, now()), None, "ejected once");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!o.is_ejected(now()), "back on probation");
        // The probe fails: out again, for longer.
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Eject);
        assert_eq!(o.eject(&CONFIG, now()), Some(Duration::from_secs(20)));
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
        assert_eq!(o.eject(&CONFIG, now()), Some(Duration::from_secs(25)));
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_of_attempts_begun_before_an_ejection_change_nothing() {
        let o = Outlier::default();
        let now = Instant::now;
        for _ in 0..3 {
            o.record(false, &CONFIG, now());
        }
        assert!(o.eject(&CONFIG, now()).is_some());
        // A late success must not take it back before its time is up.
        assert_eq!(o.record(true, &CONFIG, now()), Verdict::Healthy);
        assert!(o.is_ejected(now()));
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Failing);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Back on probation: the probe's success clears it.
        assert_eq!(o.record(true, &CONFIG, now()), Verdict::Healthy);
        assert_eq!(o.record(false, &CONFIG, now()), Verdict::Failing);
    }

    #[test]
    fn at_least_one_endpoint_may_be_ejected() {
        assert_eq!(OutlierConfig::DEFAULT.max_ejected(3), 1);
        assert_eq!(CONFIG.max_ejected(10), 5);
    }
}
