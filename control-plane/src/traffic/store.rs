//! Each proxy's recent reports, by node id. Reports are kept for [`KEEP`] so a
//! window up to that long can be answered; a proxy that stops reporting is
//! forgotten after the same time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use remora_proto::telemetry::HopReport;

/// Milliseconds since the Unix epoch, the clock reports are kept and read by.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How far back reports are kept.
pub const KEEP_MS: u64 = 10 * 60 * 1000;
/// Reports kept per proxy at most (a proxy reporting far more often than the
/// default two seconds does not grow the store).
const MAX_REPORTS: usize = 512;

/// One proxy's reports, oldest first, and the identity its certificate proved.
#[derive(Debug, Clone)]
pub struct NodeReports {
    pub identity: Option<String>,
    pub reports: VecDeque<HopReport>,
}

#[derive(Debug, Default)]
pub struct TrafficStore {
    nodes: Mutex<HashMap<String, NodeReports>>,
}

impl TrafficStore {
    pub fn insert(&self, identity: Option<String>, report: HopReport, now_ms: u64) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|_, n| {
            n.reports
                .back()
                .is_some_and(|r| r.taken_unix_ms + KEEP_MS >= now_ms)
        });
        let node = nodes
            .entry(report.node_id.clone())
            .or_insert_with(|| NodeReports {
                identity: None,
                reports: VecDeque::new(),
            });
        // A restarted proxy (same node id) starts its counters again.
        if node
            .reports
            .back()
            .is_some_and(|last| last.started_unix_ms != report.started_unix_ms)
        {
            node.reports.clear();
        }
        node.identity = identity;
        while node
            .reports
            .front()
            .is_some_and(|r| r.taken_unix_ms + KEEP_MS < now_ms)
            || node.reports.len() >= MAX_REPORTS
        {
            node.reports.pop_front();
        }
        node.reports.push_back(report);
    }

    pub fn nodes(&self) -> Vec<NodeReports> {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
