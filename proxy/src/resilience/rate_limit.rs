//! Local rate limiting (Envoy `envoy.filters.http.local_ratelimit`): a token
//! bucket of `max_tokens`, refilled with `tokens_per_fill` per `fill_interval`
//! (continuously, in proportion to the time elapsed). A request takes a token or
//! is refused (429; gRPC RESOURCE_EXHAUSTED). The bucket is keyed by the config's
//! `stat_prefix` and outlives config changes.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
}

/// A compiled rate limit: its settings and its (long-lived) bucket.
#[derive(Debug, Clone)]
pub struct Limiter {
    pub config: BucketConfig,
    pub bucket: std::sync::Arc<TokenBucket>,
}

impl Limiter {
    pub fn allow(&self) -> bool {
        self.bucket.try_take(&self.config, Instant::now())
    }
}

#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(config: &BucketConfig, now: Instant) -> Self {
        Self {
            state: Mutex::new((f64::from(config.max_tokens), now)),
        }
    }

    /// Takes a token; false when none is left.
    pub fn try_take(&self, config: &BucketConfig, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = *s;
        let rate = f64::from(config.tokens_per_fill) / config.fill_interval.as_secs_f64().max(1e-3);
        let refilled = (tokens + rate * now.saturating_duration_since(last).as_secs_f64())
            .min(f64::from(config.max_tokens));
        if refilled >= 1.0 {
            *s = (refilled - 1.0, now);
            true
        } else {
            *s = (refilled, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_twice_the_rate_about_half_pass() {
        let config = BucketConfig {
            max_tokens: 10,
            tokens_per_fill: 10,
            fill_interval: Duration::from_secs(1),
        };
        let bucket = TokenBucket::new(&config, Instant::now());
        let mut passed = 0;
        // 20 per second for 10 s against 10 per second (and a burst of 10).
        for _ in 0..200 {
            if bucket.try_take(&config, Instant::now()) {
                passed += 1;
            }
            tokio::time::advance(Duration::from_millis(50)).await;
        }
        assert!((100..=112).contains(&passed), "{passed}");
    }
}
