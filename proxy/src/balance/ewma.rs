//! Peak-EWMA latency estimate: jumps up to a slow response at once, decays towards
//! faster ones over `DECAY`, and without samples fades towards zero (tower's and
//! Linkerd's shape). Lock-free; concurrent updates may lose one sample, which an
//! estimate can afford.
//!
//! Zero means "no sample yet" (a new endpoint, or one back from ejection): the
//! balancer gives such an endpoint one request at a time until it answers (see
//! `p2c`), so it is tried at once however fast the others are, and a slow or
//! hung one costs a single request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// How long a peak takes to decay to ~37% of its excess.
const DECAY: Duration = Duration::from_secs(10);
/// The estimate of an endpoint with no sample yet.
const UNKNOWN: f64 = 0.0;

#[derive(Debug)]
pub struct PeakEwma {
    epoch: Instant,
    cost_ns: AtomicU64,
    stamp_ns: AtomicU64,
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self::new()
    }
}

impl PeakEwma {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            cost_ns: AtomicU64::new(UNKNOWN.to_bits()),
            stamp_ns: AtomicU64::new(0),
        }
    }

    /// The current estimate in nanoseconds, decayed to now.
    pub fn get(&self) -> f64 {
        let now = self.now_ns();
        self.decayed(now)
    }

    /// Forgets the history: no sample yet (for an endpoint returning from
    /// ejection, whose old latency no longer says much: its next request is the
    /// probe that decides its fate).
    pub fn reset(&self) {
        self.cost_ns.store(UNKNOWN.to_bits(), Relaxed);
        self.stamp_ns.store(self.now_ns(), Relaxed);
    }

    /// Whether no response has been observed since the start or the last reset.
    pub fn is_unknown(&self) -> bool {
        f64::from_bits(self.cost_ns.load(Relaxed)) == UNKNOWN
    }

    /// Records one observed latency.
    pub fn observe(&self, rtt: Duration) {
        let now = self.now_ns();
        // At least a nanosecond: zero is kept for "no sample yet".
        let rtt = (rtt.as_nanos() as f64).max(1.0);
        let current = self.decayed(now);
        let next = if rtt > current {
            rtt
        } else {
            let elapsed = now.saturating_sub(self.stamp_ns.load(Relaxed)) as f64;
            let w = (-elapsed / DECAY.as_nanos() as f64).exp();
            current * w + rtt * (1.0 - w)
        };
        self.cost_ns.store(next.to_bits(), Relaxed);
        self.stamp_ns.store(now, Relaxed);
    }

    fn decayed(&self, now: u64) -> f64 {
        let cost = f64::from_bits(self.cost_ns.load(Relaxed));
        if cost == UNKNOWN {
            return cost;
        }
        // Without samples the estimate fades, so an endpoint once slow is tried
        // again. It never reaches zero (the "no sample" mark) in practice.
        let elapsed = now.saturating_sub(self.stamp_ns.load(Relaxed)) as f64;
        (cost * (-elapsed / DECAY.as_nanos() as f64).exp()).max(f64::MIN_POSITIVE)
    }

    fn now_ns(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peak_counts_at_once_and_decays() {
        let e = PeakEwma::new();
        e.observe(Duration::from_millis(100));
        assert!((e.get() - 100e6).abs() < 1e3);
        e.observe(Duration::from_millis(1));
        // Right after the peak the estimate still remembers it.
        assert!(e.get() > 90e6);
        tokio::time::advance(Duration::from_secs(30)).await;
        e.observe(Duration::from_millis(1));
        assert!(e.get() < 10e6, "{}", e.get());
    }

    #[tokio::test(start_paused = true)]
    async fn no_sample_is_unknown_until_the_first_answer_and_after_a_reset() {
        let e = PeakEwma::new();
        assert!(e.is_unknown());
        assert_eq!(e.get(), 0.0);
        e.observe(Duration::ZERO);
        assert!(!e.is_unknown(), "even an instant answer is a sample");
        e.observe(Duration::from_millis(5));
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(
            e.get() > 0.0 && !e.is_unknown(),
            "a faded estimate is known"
        );
        e.reset();
        assert!(e.is_unknown());
    }
}
