//! Summaries of a run: counts, rate, latency percentiles, backend shares.

use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use super::sample::{count_errors, share_of, Sample};

/// The outcome of a run (or of a window of it).
#[derive(Debug, Clone)]
pub struct Report {
    /// Every sample, in order of completion (`at`).
    pub samples: Vec<Sample>,
    /// How many responses and failures were recorded.
    pub total: usize,
    /// How many of them are errors ([`Sample::is_error`]).
    pub errors: usize,
    /// The time the samples cover.
    pub duration: Duration,
    /// Successful responses per second over `duration`.
    pub rps: f64,
    /// Latency percentiles of the successful responses (zero if there are none).
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Report {
    /// Summarise `samples` covering `duration`.
    pub fn from_samples(mut samples: Vec<Sample>, duration: Duration) -> Report {
        samples.sort_by_key(|s| s.at);
        let errors = count_errors(&samples);
        let mut latencies: Vec<Duration> = samples
            .iter()
            .filter(|s| !s.is_error())
            .map(|s| s.latency)
            .collect();
        latencies.sort_unstable();
        let ok = latencies.len();
        let rps = if duration.is_zero() {
            0.0
        } else {
            ok as f64 / duration.as_secs_f64()
        };
        Report {
            total: samples.len(),
            errors,
            duration,
            rps,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            p999: percentile(&latencies, 0.999),
            max: latencies.last().copied().unwrap_or_default(),
            samples,
        }
    }

    /// The report for the samples whose `at` falls in `window` (e.g. `warmup..` to
    /// leave out a warm-up); an open end is the end of this report.
    pub fn window(&self, window: impl RangeBounds<Duration>) -> Report {
        let (from, to) = resolve(&window, self.duration);
        let samples = self.samples_in(window);
        Report::from_samples(samples, to.saturating_sub(from))
    }

    /// Clones of the samples whose `at` falls in `window`.
    pub fn samples_in(&self, window: impl RangeBounds<Duration>) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|s| window.contains(&s.at))
            .cloned()
            .collect()
    }

    /// The fraction of the samples in `window` served by `backend` (see
    /// [`share_of`]).
    pub fn share_of(&self, backend: &str, window: impl RangeBounds<Duration>) -> f64 {
        share_of(&self.samples_in(window), backend)
    }

    /// How many samples in `window` are errors.
    pub fn errors_in(&self, window: impl RangeBounds<Duration>) -> usize {
        count_errors(&self.samples_in(window))
    }
}

/// The value at quantile `q` (0.0 to 1.0) of `sorted` (ascending), by nearest rank:
/// the smallest value with at least `q` of the values at or below it. Zero when
/// empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// A window's start and end, with open ends at 0 and `end`.
fn resolve(window: &impl RangeBounds<Duration>, end: Duration) -> (Duration, Duration) {
    let from = match window.start_bound() {
        Bound::Included(d) | Bound::Excluded(d) => *d,
        Bound::Unbounded => Duration::ZERO,
    };
    let to = match window.end_bound() {
        Bound::Included(d) | Bound::Excluded(d) => *d,
        Bound::Unbounded => end,
    };
    (from, to.max(from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::sample::sample;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=1000).map(ms).collect();
        assert_eq!(percentile(&sorted, 0.50), ms(500));
        assert_eq!(percentile(&sorted, 0.99), ms(990));
        assert_eq!(percentile(&sorted, 0.999), ms(999));
        assert_eq!(percentile(&sorted, 1.0), ms(1000));
        assert_eq!(percentile(&sorted, 0.0), ms(1));
    }

    #[test]
    fn percentiles_of_few_values_pick_a_real_value() {
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(percentile(&[ms(7)], 0.999), ms(7));
        let two = [ms(1), ms(9)];
        assert_eq!(percentile(&two, 0.5), ms(1));
        assert_eq!(percentile(&two, 0.51), ms(9));
        // 100 values: p99.9 is the largest one, not an interpolation past it.
        let hundred: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&hundred, 0.99), ms(99));
        assert_eq!(percentile(&hundred, 0.999), ms(100));
    }

    #[test]
    fn report_counts_errors_and_leaves_them_out_of_latency() {
        let samples = vec![
            sample(30, 200, Some("a"), 3),
            sample(10, 200, Some("a"), 1),
            sample(20, 0, None, 5000),
            sample(40, 503, None, 2),
            sample(50, 200, Some("b"), 2),
        ];
        let report = Report::from_samples(samples, Duration::from_secs(1));
        assert_eq!(report.total, 5);
        assert_eq!(report.errors, 2);
        assert_eq!(report.rps, 3.0);
        assert_eq!(report.p50, ms(2));
        assert_eq!(report.max, ms(3));
        let ats: Vec<u64> = report
            .samples
            .iter()
            .map(|s| s.at.as_millis() as u64)
            .collect();
        assert_eq!(ats, [10, 20, 30, 40, 50], "sorted by completion");
    }

    #[test]
    fn windows_select_by_completion_time() {
        let samples = (0..100)
            .map(|i| sample(i * 10, 200, Some(if i < 50 { "a" } else { "b" }), 1))
            .collect();
        let report = Report::from_samples(samples, ms(1000));
        assert_eq!(report.share_of("a", ..), 0.5);
        assert_eq!(report.share_of("b", ms(500)..), 1.0);
        assert_eq!(report.share_of("a", ms(250)..ms(750)), 0.5);
        let late = report.window(ms(500)..);
        assert_eq!(late.total, 50);
        assert_eq!(late.duration, ms(500));
        assert_eq!(late.rps, 100.0);
        assert_eq!(report.errors_in(..), 0);
    }
}
