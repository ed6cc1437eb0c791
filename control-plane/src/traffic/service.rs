//! `remora.telemetry.v1.Telemetry`: proxies' reports, checked and stored.

use std::sync::Arc;

use remora_proto::telemetry::telemetry_server::{Telemetry, TelemetryServer};
use remora_proto::telemetry::{HopReport, ReportAck};
use tonic::{Request, Response, Status};

use super::TrafficStore;
use crate::ca::SpiffeId;
use crate::escape::escape_control as escape;
use crate::xds::{Reason, Registry, XdsPeer};

#[derive(Debug, Clone)]
pub struct TelemetryService {
    store: Arc<TrafficStore>,
    /// A report is taken only from the connected node it names.
    registry: Arc<Registry>,
}

impl TelemetryService {
    pub fn new(store: Arc<TrafficStore>, registry: Arc<Registry>) -> Self {
        Self { store, registry }
    }

    pub fn into_service(self) -> TelemetryServer<Self> {
        TelemetryServer::new(self)
    }
}

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    async fn report(&self, request: Request<HopReport>) -> Result<Response<ReportAck>, Status> {
        let peer = request
            .extensions()
            .get::<XdsPeer>()
            .cloned()
            .unwrap_or_default();
        let mut report = request.into_inner();
        // Counters are cumulative: a hop that never carried a request adds
        // nothing to any window, and a proxy of a large mesh has one per
        // configured route and backend. Only hops with traffic are kept.
        report.hops.retain(|h| h.requests > 0);
        check(&report, peer.identity.as_deref())?;
        if let Err(message) = self.check_reporter(&report, &peer) {
            tracing::warn!(node_id = %escape(&report.node_id), remote = ?peer.remote, message = %escape(&message), "telemetry report refused");
            self.registry
                .refusals
                .record(Reason::Telemetry, peer.remote, &message);
            return Err(Status::permission_denied(message));
        }
        self.store
            .insert(peer.identity, report, super::store::now_ms());
        Ok(Response::new(ReportAck {}))
    }
}

impl TelemetryService {
    /// The report's node must be a connected proxy whose xDS stream the same
    /// certificate proves, and the report must be about that node's Service:
    /// nobody can speak for another proxy.
    fn check_reporter(&self, report: &HopReport, peer: &XdsPeer) -> Result<(), String> {
        let Some(node) = self.registry.node_proven_by(&report.node_id, peer) else {
            return Err(format!(
                "report for node {}, but no connected proxy of that name holds this connection's {}",
                escape(&report.node_id),
                peer.identity
                    .as_deref()
                    .map_or("address (plaintext)".to_owned(), |id| format!("certificate ({id})"))
            ));
        };
        if node.service.as_deref() != Some(report.service.as_str())
            || node.namespace != report.namespace
        {
            return Err(format!(
                "report for {}/{}, but node {} serves {}/{}",
                escape(&report.namespace),
                escape(&report.service),
                escape(&report.node_id),
                node.namespace,
                escape(node.service.as_deref().unwrap_or("nothing"))
            ));
        }
        Ok(())
    }
}

/// Ejected endpoints one report may list.
const MAX_EJECTED: usize = 4096;
/// Hops with traffic one report may hold, and histogram buckets: reports are
/// kept for minutes, so one proxy must not make the control plane keep
/// whatever a 4 MiB message holds, every two seconds.
const MAX_HOPS: usize = 4096;
const MAX_BUCKETS: usize = 64;

/// A report must come from its namespace's certificate (when there is one) and
/// have histograms that fit its bounds.
fn check(report: &HopReport, identity: Option<&str>) -> Result<(), Status> {
    if report.node_id.is_empty() || report.service.is_empty() {
        return Err(Status::invalid_argument(
            "report: node_id and service are required",
        ));
    }
    if let Some(proven) = identity {
        let id: SpiffeId = proven
            .parse()
            .map_err(|e: crate::ca::InvalidSpiffeId| Status::permission_denied(e.to_string()))?;
        if id.namespace != report.namespace {
            return Err(Status::permission_denied(format!(
                "report for namespace {}, but the client certificate {proven} is for namespace {}",
                report.namespace, id.namespace
            )));
        }
    }
    // A proxy ejects at most every endpoint it knows; this is far above that.
    if report.ejected.len() > MAX_EJECTED {
        return Err(Status::invalid_argument(format!(
            "report: {} ejected endpoints, more than {MAX_EJECTED}",
            report.ejected.len()
        )));
    }
    if report.hops.len() > MAX_HOPS {
        return Err(Status::invalid_argument(format!(
            "report: {} hops with traffic, more than {MAX_HOPS}",
            report.hops.len()
        )));
    }
    if report.bucket_bounds.len() > MAX_BUCKETS {
        return Err(Status::invalid_argument(format!(
            "report: {} histogram buckets, more than {MAX_BUCKETS}",
            report.bucket_bounds.len()
        )));
    }
    let buckets = report.bucket_bounds.len() + 1;
    for (i, hop) in report.hops.iter().enumerate() {
        for (field, counts) in [
            ("duration_counts", &hop.duration_counts),
            ("overhead_counts", &hop.overhead_counts),
        ] {
            if counts.len() != buckets {
                return Err(Status::invalid_argument(format!(
                    "report: hops[{i}].{field} has {} counts for {} buckets",
                    counts.len(),
                    buckets
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use remora_proto::telemetry::Hop;

    #[test]
    fn reports_are_checked() {
        let mut r = HopReport {
            node_id: "web-1".into(),
            service: "web".into(),
            namespace: "shop".into(),
            bucket_bounds: vec![0.1],
            hops: vec![Hop {
                duration_counts: vec![1, 0],
                overhead_counts: vec![1, 0],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(check(&r, None).is_ok());
        assert!(check(&r, Some("spiffe://cluster.local/ns/shop/sa/web")).is_ok());
        let err = check(&r, Some("spiffe://cluster.local/ns/other/sa/web")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        r.hops[0].overhead_counts.pop();
        let err = check(&r, None).unwrap_err();
        assert!(err.message().contains("hops[0].overhead_counts"), "{err:?}");
    }

    #[test]
    fn a_report_too_large_to_keep_is_refused() {
        let hop = Hop {
            requests: 1,
            duration_counts: vec![1, 0],
            overhead_counts: vec![1, 0],
            ..Default::default()
        };
        let mut r = HopReport {
            node_id: "web-1".into(),
            service: "web".into(),
            namespace: "shop".into(),
            bucket_bounds: vec![0.1],
            hops: vec![hop; MAX_HOPS],
            ..Default::default()
        };
        assert!(check(&r, None).is_ok());
        r.hops.push(r.hops[0].clone());
        let err = check(&r, None).unwrap_err();
        assert!(err.message().contains("4097 hops"), "{err:?}");
        r.hops.truncate(1);
        r.bucket_bounds = vec![0.1; MAX_BUCKETS + 1];
        let err = check(&r, None).unwrap_err();
        assert!(err.message().contains("histogram buckets"), "{err:?}");
    }
}
