//! A fixed-bucket histogram of durations (seconds), lock-free.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds in seconds: from 100 µs, so a proxy's own sub-millisecond cost
/// shows, to 10 s.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// `(upper bound, cumulative count)` per bucket, +Inf last; the sum in seconds;
    /// the count.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut cumulative = 0;
        let mut out = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            out.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        (out, self.sum_ns.load(Relaxed) as f64 / 1e9, cumulative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(20));
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(buckets[0], (0.0001, 1), "le is inclusive");
        assert_eq!(buckets[2], (0.0005, 2));
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 3));
        assert_eq!(count, 3);
        assert!((sum - 20.0004).abs() < 1e-9);
    }
}
