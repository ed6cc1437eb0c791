//! Explicit mode for any protocol: each of the bootstrap's `upstreams` is a local
//! port the app connects to for one Service port (as Consul Connect does), so a
//! VM or a laptop needs no iptables. An HTTP port goes down the HTTP path as a
//! request to that Service; an opaque one to the Service's endpoints over mTLS.

use std::sync::Arc;

use super::listener::{Accepted, Connections};
use super::Context;
use crate::bootstrap::Upstream;
use crate::http::{ConnectionInfo, HttpServer, Outbound};
use crate::snapshot::Destinations;
use crate::tcp::carry::{self, Facts};
use crate::telemetry::tcp_hop::TcpHopKey;

pub struct UpstreamConnections {
    pub context: Arc<Context>,
    pub http: Arc<HttpServer<Outbound>>,
    pub upstream: Upstream,
}

impl Connections for UpstreamConnections {
    async fn serve(self: Arc<Self>, accepted: Accepted) {
        let ctx = &self.context;
        let u = &self.upstream;
        let name = Destinations::key(&u.service, &u.namespace, u.port);
        let snapshot = ctx.snapshot.load_full();
        let Some(destination) = snapshot.destinations.by_name.get(&name).cloned() else {
            // An HTTP port without a cluster IP has no chain of its own: it is
            // a virtual host of the route table, reached by its name.
            let authority = format!("{}.{}.svc.cluster.local:{}", u.service, u.namespace, u.port);
            let http = snapshot
                .outbound
                .as_ref()
                .is_some_and(|t| t.virtual_host(&authority).is_some());
            if http {
                drop(snapshot);
                let info = ConnectionInfo {
                    default_authority: Some(authority.into()),
                    ..Default::default()
                };
                return self
                    .http
                    .serve_connection(accepted.stream, accepted.peer, info, accepted.watcher)
                    .await;
            }
            let key = TcpHopKey {
                direction: "outbound",
                destination: name.clone(),
                peer_identity: String::new(),
            };
            tracing::info!(upstream = %name, listen = %u.listen, "connection refused: no such Service port in the config (yet)");
            return carry::refused(
                &ctx.metrics,
                key,
                Facts::default(),
                "no_destination",
                format!("{name} is not in the config"),
            );
        };
        super::to_destination(ctx, &self.http, accepted, snapshot, destination, None, None).await
    }
}
