//! Reports to the control plane: every `report_interval` the counters of every
//! hop (cumulative since the proxy started) go to `remora.telemetry.v1.Telemetry`
//! on the control plane's xDS port, over mTLS once the proxy has a certificate.
//! The control plane takes differences between reports for `remora stat` and
//! the dashboard. A failed report is logged and retried with the next one;
//! nothing queues.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use remora_proto::telemetry::telemetry_client::TelemetryClient;
use remora_proto::telemetry::{EjectedEndpoint, Hop, HopReport};
use tonic::transport::Channel;

use super::histogram::BUCKETS;
use super::{Histogram, HopStats, Metrics};
use crate::tls::TlsContext;

const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The endpoints outlier detection has ejected now (read from the snapshot in
/// force, which this module does not know).
pub type Ejected = Arc<dyn Fn() -> Vec<EjectedEndpoint> + Send + Sync>;

pub struct Reporter {
    pub control_plane: SocketAddr,
    /// This proxy's TLS and the control plane's SPIFFE id, when it has an identity.
    pub mtls: Option<(Arc<TlsContext>, String)>,
    pub metrics: Arc<Metrics>,
    pub node_id: String,
    pub every: Duration,
    /// Reported with every report, for the control plane's endpoint view.
    pub ejected: Ejected,
}

impl Reporter {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        let started_unix_ms = unix_ms();
        let mut client: Option<TelemetryClient<Channel>> = None;
        let mut timer = tokio::time::interval(self.every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            if client.is_none() {
                client = self.connect().await;
            }
            let Some(c) = client.as_mut() else { continue };
            let report = self.report(started_unix_ms);
            if let Err(status) = c.report(report).await {
                tracing::debug!(error = %status.message(), code = ?status.code(), "traffic report not taken; reconnecting for the next");
                client = None;
            }
        }
    }

    async fn connect(&self) -> Option<TelemetryClient<Channel>> {
        let tls = match &self.mtls {
            // Without a certificate yet, wait for one rather than reporting in
            // plaintext what an mTLS proxy knows.
            Some((tls, expected)) => Some(tls.client_config(expected)?),
            None => None,
        };
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.control_plane))
                .ok()?
                .connect_timeout(Duration::from_secs(2))
                .timeout(REPORT_TIMEOUT)
                .tcp_nodelay(true);
        match crate::tls::connect(endpoint, self.control_plane, tls).await {
            Ok(channel) => Some(TelemetryClient::new(channel)),
            Err(error) => {
                tracing::debug!(%error, "cannot reach the control plane to report traffic");
                None
            }
        }
    }

    fn report(&self, started_unix_ms: u64) -> HopReport {
        let m = &self.metrics;
        // Only hops that carried a request: counters are cumulative, so the
        // others say nothing, and there is one per configured route backend
        // (a thousand Services, a thousand hops every report).
        let carried = |h: &&std::sync::Arc<HopStats>| h.requests_and_failures().0 > 0;
        let mut hops: Vec<Hop> = m.hops().iter().filter(carried).map(|h| hop(h)).collect();
        hops.extend(m.inbound().iter().filter(carried).map(|h| hop(h)));
        HopReport {
            node_id: self.node_id.clone(),
            service: m.service.clone(),
            namespace: m.namespace.clone(),
            started_unix_ms,
            taken_unix_ms: unix_ms(),
            bucket_bounds: BUCKETS.to_vec(),
            hops,
            ejected: (self.ejected)(),
        }
    }
}

fn hop(h: &HopStats) -> Hop {
    let (requests, failures) = h.requests_and_failures();
    let (duration_counts, duration_sum_seconds) = counts(&h.duration);
    let (overhead_counts, overhead_sum_seconds) = counts(&h.overhead);
    let label = |name: &str| h.label(name).to_owned();
    Hop {
        direction: label("direction"),
        source_service: label("source_service"),
        source_namespace: label("source_namespace"),
        source_identity: label("source_identity"),
        destination_service: label("destination_service"),
        destination_namespace: label("destination_namespace"),
        route: label("route"),
        backend: label("backend"),
        parent_service: label("parent_service"),
        parent_namespace: label("parent_namespace"),
        requests,
        failures,
        duration_counts,
        duration_sum_seconds,
        overhead_counts,
        overhead_sum_seconds,
    }
}

/// Non-cumulative bucket counts (+Inf last) and the sum.
fn counts(h: &Histogram) -> (Vec<u64>, f64) {
    let (cumulative, sum, _) = h.snapshot();
    let mut previous = 0;
    let counts = cumulative
        .iter()
        .map(|(_, c)| {
            let n = c - previous;
            previous = *c;
            n
        })
        .collect();
    (counts, sum)
}

fn unix_ms() -> u64 {
    super::since_epoch().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_reports_its_failures_and_plain_bucket_counts() {
        let h = HopStats::new(vec![
            ("direction", "outbound".to_owned()),
            ("destination_service", "orders".to_owned()),
        ]);
        h.responses.count(200, None);
        h.responses.count(200, Some(0));
        h.responses.count(503, None);
        h.responses.count(200, Some(14));
        h.duration.observe(Duration::from_micros(50));
        h.duration.observe(Duration::from_millis(3));
        let r = hop(&h);
        assert_eq!((r.requests, r.failures), (4, 2));
        assert_eq!(r.destination_service, "orders");
        assert_eq!(r.duration_counts.len(), BUCKETS.len() + 1);
        assert_eq!(r.duration_counts.iter().sum::<u64>(), 2);
        assert_eq!(r.duration_counts[0], 1);
        assert_eq!(r.duration_counts[5], 1, "3 ms is in the 5 ms bucket");
    }
}
