//! A cluster as one snapshot sees it: immutable, pointing at long-lived endpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::breaker::{BreakerState, Concurrency, Limit, Limits};
use super::{Endpoint, OutlierConfig, Verdict};
use crate::balance::{Balancer, Candidate};
use crate::resilience::fault::Fault;
use crate::resilience::{BudgetConfig, RetryBudget};

/// The protocol a cluster's unmeshed endpoints speak (meshed ones always get HTTP/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct WeightedEndpoint {
    pub endpoint: Arc<Endpoint>,
    pub weight: u32,
}

impl Candidate for WeightedEndpoint {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.endpoint.addr()
    }

    fn is_ejected(&self, now: tokio::time::Instant) -> bool {
        self.endpoint.outlier().is_ejected(now)
    }

    fn in_flight(&self) -> u32 {
        self.endpoint.in_flight()
    }

    fn latency_estimate(&self) -> f64 {
        self.endpoint.ewma().get()
    }
}

/// The app port a meshed endpoint's proxy is asked for: the Service port's
/// `targetPort`, from the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPort {
    pub port: u16,
    /// `remora-target-port`'s value, made once: each request to a meshed
    /// endpoint clones it (a reference count, no allocation).
    pub header: http::HeaderValue,
}

impl TargetPort {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            header: http::HeaderValue::from(port),
        }
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    /// The Service and namespace it reaches (from its metadata), for metrics.
    pub destination: (String, String),
    /// The SPIFFE ids its endpoints announce (comma-separated; empty outside
    /// the mesh or without identities), for metrics.
    pub destination_identity: String,
    pub protocol: Protocol,
    pub endpoints: Vec<WeightedEndpoint>,
    pub retry_budget: BudgetConfig,
    pub balancer: Balancer,
    /// `None`: endpoints are never ejected.
    pub outlier: Option<OutlierConfig>,
    /// The circuit-breaker limits (see `upstream::breaker`).
    pub limits: Limits,
    /// Requests allowed in progress (see [`Limits::concurrency`]); `None`: no limit.
    pub concurrency: Option<Concurrency>,
    /// The fault injected into requests to this cluster, if any.
    pub fault: Option<Arc<Fault>>,
    /// The app port to ask a meshed endpoint for (HTTP header, or the opaque
    /// TCP transport header); `None`: the Service port, and HTTP to the far
    /// proxy's `app`.
    pub target_port: Option<TargetPort>,
    /// What outlives this snapshot: the budget's window and the counters.
    pub state: Arc<ClusterState>,
}

impl Cluster {
    /// The endpoint an attempt goes to; `hash` is the request's key for
    /// consistent hashing.
    pub fn pick(&self, hash: Option<u64>) -> Option<&WeightedEndpoint> {
        self.balancer
            .pick(&self.endpoints, hash, &self.state.round_robin)
    }

    /// Tells outlier detection how an attempt on `endpoint` went (a request's
    /// response, or a TCP connect); true when that ejected the endpoint. At most
    /// `max_ejection_percent` of the endpoints are out at once. A success, the
    /// common case, costs two atomic loads.
    pub fn record_outcome(&self, endpoint: &Endpoint, success: bool) -> bool {
        let Some(config) = &self.outlier else {
            return false;
        };
        if success {
            endpoint.outlier().succeeded(tokio::time::Instant::now);
            return false;
        }
        let now = tokio::time::Instant::now();
        if endpoint.outlier().failed(config, now) != Verdict::Eject {
            return false;
        }
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.endpoint.outlier().is_ejected(now))
            .count();
        if ejected >= config.max_ejected(self.endpoints.len()) {
            return false;
        }
        let Some(time) = endpoint.outlier().eject(config, now) else {
            return false;
        };
        // Its next request, once it is back, is the probe that decides its fate.
        endpoint.ewma().reset();
        ClusterStats::count(&self.state.stats.ejections);
        tracing::info!(cluster = %self.name, endpoint = %endpoint.addr(), ?time, "endpoint ejected after consecutive failures");
        true
    }

    /// The limits and what counts against them now, for `/config_dump`.
    pub fn breakers_json(&self) -> serde_json::Value {
        let b = &self.state.breaker;
        serde_json::json!({
            "max_requests": self.limits.max_requests,
            "max_connections": self.limits.max_connections,
            "max_pending_requests": self.limits.max_pending_requests,
            "requests_in_progress": b.active(),
            "requests_waiting": b.waiting(),
            "opaque_connections": b.connections(),
            "outlier_detection": self.outlier.map(|o| serde_json::json!({
                "consecutive_failures": o.consecutive_failures,
                "base_ejection_time_seconds": o.base_ejection_time.as_secs_f64(),
                "max_ejection_time_seconds": o.max_ejection_time.as_secs_f64(),
                "max_ejection_percent": o.max_ejection_percent,
            })),
        })
    }

    /// What a request or connection refused by `limit` is told: the limit, its
    /// value and the Service, as a user wrote them in its TrafficPolicy.
    pub fn overflow_reason(&self, limit: Limit) -> String {
        let (service, namespace) = &self.destination;
        let value = self.limits.get(limit).unwrap_or(0);
        let field = limit.field();
        if namespace.is_empty() {
            format!("overflow: {service}: {field} ({value}) reached")
        } else {
            format!("overflow: {service}.{namespace}: {field} ({value}) reached")
        }
    }
}

/// A cluster's state across config changes, held by the endpoint registry.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub budget: RetryBudget,
    pub stats: ClusterStats,
    /// Requests in progress and in line, opaque connections carried.
    pub breaker: BreakerState,
    /// The round-robin turn.
    pub round_robin: AtomicU64,
}

/// What the outbound path decided for a cluster's requests (the telemetry issue
/// exports them as metrics; `/config_dump` shows them).
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub retry_budget_exhausted: AtomicU64,
    /// Failed attempts not retried because the body could not be replayed.
    pub retry_body_not_replayable: AtomicU64,
    pub timeouts_request: AtomicU64,
    pub timeouts_per_try: AtomicU64,
    pub timeouts_connect: AtomicU64,
    pub ejections: AtomicU64,
    /// Requests and opaque connections refused by a circuit breaker, in all
    /// and by limit.
    pub overflow: AtomicU64,
    pub overflow_max_requests: AtomicU64,
    pub overflow_max_connections: AtomicU64,
    pub overflow_max_pending_requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub faults_aborted: AtomicU64,
    pub faults_delayed: AtomicU64,
    /// Copies of requests sent here by a route's mirror.
    pub mirrored: AtomicU64,
    /// Mirror copies not sent: the body could not be replayed.
    pub mirror_skipped: AtomicU64,
}

impl ClusterStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal by `limit`.
    pub fn overflowed(&self, limit: Limit) {
        Self::count(&self.overflow);
        Self::count(self.overflow_by(limit));
    }

    /// The refusals by `limit`.
    pub fn overflow_by(&self, limit: Limit) -> &AtomicU64 {
        match limit {
            Limit::MaxRequests => &self.overflow_max_requests,
            Limit::MaxConnections => &self.overflow_max_connections,
            Limit::MaxPendingRequests => &self.overflow_max_pending_requests,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": n(&self.requests),
            "retries": n(&self.retries),
            "retry_budget_exhausted": n(&self.retry_budget_exhausted),
            "retry_body_not_replayable": n(&self.retry_body_not_replayable),
            "timeouts_request": n(&self.timeouts_request),
            "timeouts_per_try": n(&self.timeouts_per_try),
            "timeouts_connect": n(&self.timeouts_connect),
            "ejections": n(&self.ejections),
            "overflow": n(&self.overflow),
            "overflow_max_requests": n(&self.overflow_max_requests),
            "overflow_max_connections": n(&self.overflow_max_connections),
            "overflow_max_pending_requests": n(&self.overflow_max_pending_requests),
            "rate_limited": n(&self.rate_limited),
            "faults_aborted": n(&self.faults_aborted),
            "faults_delayed": n(&self.faults_delayed),
            "mirrored": n(&self.mirrored),
            "mirror_skipped": n(&self.mirror_skipped),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::upstream::Transport;

    fn two_endpoints() -> Cluster {
        let endpoint = |port: u16| WeightedEndpoint {
            endpoint: Arc::new(Endpoint::new(
                ([127, 0, 0, 1], port).into(),
                Transport::MeshH2,
            )),
            weight: 1,
        };
        Cluster {
            name: "orders".into(),
            destination: ("orders".into(), "default".into()),
            destination_identity: String::new(),
            protocol: Protocol::Http1,
            endpoints: vec![endpoint(1), endpoint(2)],
            retry_budget: BudgetConfig::DEFAULT,
            balancer: Balancer::PeakEwma,
            outlier: Some(OutlierConfig::DEFAULT),
            limits: Limits::default(),
            concurrency: None,
            fault: None,
            target_port: None,
            state: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_failing_endpoint_is_ejected_and_probed_first_when_it_is_back() {
        let c = two_endpoints();
        let (bad, good) = (&c.endpoints[0].endpoint, &c.endpoints[1].endpoint);
        // The failing one answers faster: without ejection it would be picked.
        bad.ewma().observe(Duration::from_micros(50));
        good.ewma().observe(Duration::from_micros(100));
        assert_eq!(c.pick(None).unwrap().endpoint.addr(), bad.addr());
        for _ in 0..4 {
            assert!(!c.record_outcome(bad, false));
        }
        assert!(
            c.record_outcome(bad, false),
            "the fifth failure in a row ejects"
        );
        for _ in 0..20 {
            assert_eq!(c.pick(None).unwrap().endpoint.addr(), good.addr());
        }
        tokio::time::advance(OutlierConfig::DEFAULT.base_ejection_time).await;
        // Back with no latency sample: the next request is its probe.
        assert_eq!(c.pick(None).unwrap().endpoint.addr(), bad.addr());
        assert!(!c.record_outcome(bad, true));
        assert!(!bad.outlier().is_ejected(Instant::now()));
        assert_eq!(n(&c.state.stats.ejections), 1);
    }

    #[test]
    fn an_overflow_names_the_service_the_limit_and_its_value() {
        let mut c = two_endpoints();
        c.limits.max_pending_requests = Some(10);
        assert_eq!(
            c.overflow_reason(Limit::MaxPendingRequests),
            "overflow: orders.default: maxPendingRequests (10) reached"
        );
        c.destination.1 = String::new();
        assert_eq!(
            c.overflow_reason(Limit::MaxRequests),
            "overflow: orders: maxRequests (0) reached"
        );
    }

    fn n(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
