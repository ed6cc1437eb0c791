//! A cluster as one snapshot sees it: immutable, pointing at long-lived endpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Endpoint;
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

#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub endpoints: Vec<WeightedEndpoint>,
    pub retry_budget: BudgetConfig,
    /// What outlives this snapshot: the budget's window and the counters.
    pub state: Arc<ClusterState>,
}

/// A cluster's state across config changes, held by the endpoint registry.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub budget: RetryBudget,
    pub stats: ClusterStats,
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
}

impl ClusterStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
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
        })
    }
}
