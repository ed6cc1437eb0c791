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
    context: Arc<Context>,
    http: Arc<HttpServer<Outbound>>,
    upstream: Upstream,
    /// The Service port's key in `Destinations::by_name`, made once.
    name: String,
    /// Its virtual host's name, for an HTTP port, made once.
    authority: Arc<str>,
}

impl UpstreamConnections {
    pub fn new(context: Arc<Context>, http: Arc<HttpServer<Outbound>>, upstream: Upstream) -> Self {
        let name = Destinations::key(&upstream.service, &upstream.namespace, upstream.port);
        let authority = format!(
            "{}.{}.svc.cluster.local:{}",
            upstream.service, upstream.namespace, upstream.port
        )
        .into();
        UpstreamConnections {
            context,
            http,
            upstream,
            name,
            authority,
        }
    }
}

impl Connections for UpstreamConnections {
    async fn serve(self: Arc<Self>, accepted: Accepted) {
        let ctx = &self.context;
        let u = &self.upstream;
        let snapshot = ctx.snapshot.load_full();
        let Some(destination) = snapshot.destinations.by_name.get(&self.name).cloned() else {
            // An HTTP port without a cluster IP has no chain of its own: it is
            // a virtual host of the route table, reached by its name.
            let http = snapshot
                .outbound
                .as_ref()
                .is_some_and(|t| t.virtual_host(&self.authority).is_some());
            if http {
                drop(snapshot);
                let info = ConnectionInfo {
                    default_authority: Some(self.authority.clone()),
                    ..Default::default()
                };
                return self
                    .http
                    .serve_connection(accepted.stream, accepted.peer, info, accepted.watcher)
                    .await;
            }
            let key = TcpHopKey {
                direction: "outbound",
                destination: self.name.clone(),
                peer_identity: String::new(),
            };
            tracing::info!(upstream = %self.name, listen = %u.listen, "connection refused: no such Service port in the config (yet)");
            return carry::refused(
                &ctx.metrics,
                key,
                Facts::default(),
                "no_destination",
                format!("{} is not in the config", self.name),
            );
        };
        super::to_destination(ctx, &self.http, accepted, snapshot, destination, None, None).await
    }
}
