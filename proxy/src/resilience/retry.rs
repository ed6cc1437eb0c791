//! A route's retry policy (Envoy `RetryPolicy`): the conditions, how many retries,
//! the per-try timeout and a fully jittered exponential backoff.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::grpc::grpc_status;

/// Envoy's defaults when `retry_back_off` is absent.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// How much of a request body is kept to replay it.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// Which failures are retried (Envoy `retry_on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// `connect-failure`: nothing reached the upstream.
    pub connect_failure: bool,
    /// `reset` / `refused-stream`: the connection or stream broke.
    pub reset: bool,
    /// `5xx`: any 5xx, connect failures, resets and per-try timeouts.
    pub server_error: bool,
    /// `gateway-error`: 502, 503, 504 and per-try timeouts.
    pub gateway_error: bool,
    /// `retriable-status-codes`: the statuses listed.
    pub listed_statuses: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub on: RetryOn,
    pub statuses: Vec<u16>,
    /// gRPC status codes retried (`cancelled`, `unavailable`, ...), as a bit set.
    pub grpc_codes: u32,
    pub retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Whether a response is a failure this policy retries.
    pub fn retries_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let code = status.as_u16();
        (self.on.server_error && status.is_server_error())
            || (self.on.gateway_error && matches!(code, 502..=504))
            || (self.on.listed_statuses && self.statuses.contains(&code))
            || (self.grpc_codes != 0
                && grpc_status(headers).is_some_and(|c| c < 32 && self.grpc_codes & (1 << c) != 0))
    }

    /// Whether a failure to get a response is retried: `nothing_sent` when the
    /// request never reached the upstream (a connect or handshake failure).
    pub fn retries_error(&self, nothing_sent: bool) -> bool {
        if nothing_sent {
            self.on.connect_failure || self.on.server_error || self.on.gateway_error
        } else {
            self.on.reset || self.on.server_error
        }
    }

    /// Whether an attempt that hit its per-try timeout is retried.
    pub fn retries_timeout(&self) -> bool {
        self.on.server_error || self.on.gateway_error || self.on.reset
    }

    /// How long to wait before retry `n` (1 for the first): uniformly random up to
    /// `base × 2^(n-1)`, capped at the maximum ("full jitter"). `draw` is in [0, 1).
    pub fn backoff(&self, n: u32, draw: f64) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
            .min(self.backoff_max);
        ceiling.mul_f64(draw.clamp(0.0, 1.0))
    }
}

/// gRPC codes by the names Envoy's `retry_on` uses.
pub fn grpc_code(name: &str) -> Option<u32> {
    Some(match name {
        "cancelled" => 1,
        "deadline-exceeded" => 4,
        "resource-exhausted" => 8,
        "internal" => 13,
        "unavailable" => 14,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            on,
            statuses: vec![409],
            grpc_codes: 1 << 14,
            retries: 2,
            per_try_timeout: None,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
        }
    }

    #[test]
    fn conditions_follow_envoy() {
        let none = HeaderMap::new();
        let gateway = policy(RetryOn {
            gateway_error: true,
            ..Default::default()
        });
        assert!(gateway.retries_response(StatusCode::SERVICE_UNAVAILABLE, &none));
        assert!(!gateway.retries_response(StatusCode::INTERNAL_SERVER_ERROR, &none));
        let five = policy(RetryOn {
            server_error: true,
            ..Default::default()
        });
        assert!(five.retries_response(StatusCode::INTERNAL_SERVER_ERROR, &none));
        assert!(!five.retries_response(StatusCode::CONFLICT, &none));
        let listed = policy(RetryOn {
            listed_statuses: true,
            ..Default::default()
        });
        assert!(listed.retries_response(StatusCode::CONFLICT, &none));
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert!(
            listed.retries_response(StatusCode::OK, &grpc),
            "UNAVAILABLE"
        );
        grpc.insert("grpc-status", "5".parse().unwrap());
        assert!(!listed.retries_response(StatusCode::OK, &grpc), "NOT_FOUND");
    }

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        let p = policy(RetryOn::default());
        assert_eq!(
            p.backoff(1, 0.999_999),
            Duration::from_millis(25).mul_f64(0.999_999)
        );
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(50));
        assert_eq!(
            p.backoff(10, 0.5),
            Duration::from_millis(125),
            "capped at the max"
        );
        assert_eq!(p.backoff(2, 0.0), Duration::ZERO);
    }
}
