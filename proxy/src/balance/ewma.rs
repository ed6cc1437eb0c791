//! Peak-EWMA latency estimate: jumps up to a slow response at once, decays towards
//! faster ones over `DECAY`. Lock-free; concurrent updates may lose one sample, which
//! an estimate can afford.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// How long a peak takes to decay to ~37% of its excess.
const DECAY: Duration = Duration::from_secs(10);
/// The estimate a fresh endpoint starts with: optimistic, so new endpoints get traffic.
const INITIAL: Duration = Duration::from_millis(1);

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
            cost_ns: AtomicU64::new((INITIAL.as_nanos() as f64).to_bits()),
            stamp_ns: AtomicU64::new(0),
        }
    }

    /// The current estimate in nanoseconds, decayed to now.
    pub fn get(&self) -> f64 {
        let now = self.now_ns();
        self.decayed(now)
    }

    /// Forgets the history: back to the optimistic initial estimate (for an
    /// endpoint returning from ejection, whose old latency no longer says much).
    pub fn reset(&self) {
        self.cost_ns
            .store((INITIAL.as_nanos() as f64).to_bits(), Relaxed);
        self.stamp_ns.store(self.now_ns(), Relaxed);
    }

    /// Records one observed latency.
    pub fn observe(&self, rtt: Duration) {
        let now = self.now_ns();
        let rtt = rtt.as_nanos() as f64;
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
        let elapsed = now.saturating_sub(self.stamp_ns.load(Relaxed)) as f64;
        let floor = INITIAL.as_nanos() as f64;
        if cost <= floor {
            return cost;
        }
        // Without samples a peak fades towards the initial estimate.
        floor + (cost - floor) * (-elapsed / DECAY.as_nanos() as f64).exp()
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
}
