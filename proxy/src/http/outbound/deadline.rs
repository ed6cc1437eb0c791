//! A request's deadline: when it must have its answer and which timeout that
//! is, and the answer once it has passed. The timeout layer sets it; the retry
//! layer starts no attempt or backoff past it.

use http::{HeaderMap, Response};
use tokio::time::Instant;

use crate::http::reply::{timed_out, TimeoutKind};
use crate::http::ResponseBody;
use crate::resilience::deadline::{parse_grpc_timeout, GRPC_TIMEOUT};
use crate::snapshot::RoutePolicy;
use crate::upstream::ClusterStats;

/// When a request must have its answer, and which timeout that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub kind: TimeoutKind,
}

impl Deadline {
    /// The deadline of a request that starts `now`, if it has one.
    pub fn of(policy: &RoutePolicy, headers: &HeaderMap, grpc: bool, now: Instant) -> Option<Self> {
        let route = policy.timeout.map(|t| Deadline {
            at: now + t,
            kind: TimeoutKind::Request,
        });
        let client = policy
            .grpc_timeout
            .filter(|_| grpc)
            .and_then(|cap| {
                let asked = parse_grpc_timeout(headers.get(GRPC_TIMEOUT)?)?;
                Some(cap.map_or(asked, |c| asked.min(c)))
            })
            .map(|t| Deadline {
                at: now + t,
                kind: TimeoutKind::GrpcDeadline,
            });
        match (route, client) {
            (Some(r), Some(c)) => Some(if c.at < r.at { c } else { r }),
            (r, c) => r.or(c),
        }
    }

    /// The request's answer once the deadline has passed: the timeout counted
    /// against the cluster (and flagged in the access log), and 504 naming it.
    pub fn expired(self, stats: &ClusterStats, grpc: bool) -> Response<ResponseBody> {
        crate::telemetry::flag(|f| f.timed_out = true);
        match self.kind {
            TimeoutKind::PerTry => ClusterStats::count(&stats.timeouts_per_try),
            TimeoutKind::Request | TimeoutKind::GrpcDeadline => {
                ClusterStats::count(&stats.timeouts_request)
            }
        }
        timed_out(self.kind, grpc)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    #[test]
    fn the_sooner_of_the_route_timeout_and_a_grpc_timeout_the_route_honours() {
        let now = Instant::now();
        let secs = Duration::from_secs;
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("2S"));
        let route = |timeout, grpc_timeout| RoutePolicy {
            timeout,
            grpc_timeout,
            ..Default::default()
        };
        let deadline = |at: Duration, kind| Some(Deadline { at: now + at, kind });

        let strict = route(Some(secs(1)), Some(None));
        assert_eq!(
            Deadline::of(&strict, &headers, true, now),
            deadline(secs(1), TimeoutKind::Request)
        );
        let patient = route(Some(secs(5)), Some(None));
        assert_eq!(
            Deadline::of(&patient, &headers, true, now),
            deadline(secs(2), TimeoutKind::GrpcDeadline)
        );
        assert_eq!(
            Deadline::of(&patient, &headers, false, now),
            deadline(secs(5), TimeoutKind::Request),
            "not a gRPC call"
        );
        let capped = route(None, Some(Some(Duration::from_millis(1500))));
        assert_eq!(
            Deadline::of(&capped, &headers, true, now),
            deadline(Duration::from_millis(1500), TimeoutKind::GrpcDeadline)
        );
        assert!(Deadline::of(&route(None, None), &headers, true, now).is_none());
    }
}
