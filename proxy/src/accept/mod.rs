//! The connection path, from the top: a listener accepts (`listener`), the
//! original destination says where the app was going (`transparent`), detection
//! says what it speaks (`detect`), and the connection goes down the HTTP path
//! (outbound: route -> filters -> breaker -> mirror -> hash -> timeout -> retry
//! -> balance -> endpoint, see `http::outbound`) or the opaque TCP one
//! (authorize -> balance -> connect -> copy).
//!
//! - [`listener`]: the accept loop, connection caps and the drain.
//! - [`outbound`]: the app's connections, explicit or redirected.
//! - [`inbound`]: the mesh's connections to this proxy's app.
//! - [`upstreams`]: the bootstrap's local ports for Service ports.

pub mod inbound;
pub mod listener;
pub mod outbound;
pub mod upstreams;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::detect::{self, DetectStats, OpaquePorts};
use crate::http::InboundStats;
use crate::snapshot::Snapshot;
use crate::telemetry::Metrics;

pub use listener::{serve, Accepted, Connections};

/// Carries a connection to a Service port as the port is declared: HTTP with
/// the Service as the default authority, or opaque TCP to its endpoints
/// (`pinned`: to that endpoint only). `original` is where the app dialled, in
/// transparent mode.
pub(crate) async fn to_destination(
    ctx: &Context,
    http: &crate::http::HttpServer<crate::http::Outbound>,
    accepted: Accepted,
    snapshot: Arc<Snapshot>,
    destination: Arc<crate::snapshot::Destination>,
    pinned: Option<Arc<crate::upstream::Endpoint>>,
    original: Option<std::net::SocketAddr>,
) {
    use crate::snapshot::Carry;
    use crate::tcp::carry::{self, Facts};
    ctx.detect
        .stats
        .record(detect::Direction::Outbound, destination.port, "skipped");
    match &destination.carry {
        Carry::Http { authority } => {
            drop(snapshot);
            let info = crate::http::ConnectionInfo {
                default_authority: Some(authority.clone()),
                ..Default::default()
            };
            http.serve_connection(accepted.stream, accepted.peer, info, accepted.watcher)
                .await
        }
        Carry::Opaque {
            cluster,
            idle_timeout,
        } => {
            let facts = Facts {
                detected: "declared",
                opaque_reason: detect::OpaqueReason::Declared.reason(),
                original_destination: original,
                app_protocol: destination.app_protocol.clone(),
                ..Default::default()
            };
            let name = crate::snapshot::Destinations::key(
                &destination.service,
                &destination.namespace,
                destination.port,
            );
            let Some(cluster) = snapshot.clusters.get(cluster).cloned() else {
                let key = crate::telemetry::tcp_hop::TcpHopKey {
                    direction: "outbound",
                    destination: name,
                    peer_identity: String::new(),
                };
                let why = format!("cluster {cluster} is not in the config");
                return carry::refused(&ctx.metrics, key, facts, "no_destination", why);
            };
            let idle = *idle_timeout;
            drop(snapshot);
            let port = destination.port;
            carry::to_cluster(
                accepted.stream,
                &cluster,
                pinned.as_deref(),
                name,
                port,
                idle,
                &ctx.metrics,
                facts,
            )
            .await
        }
    }
}

/// A listener that serves HTTP alone (the admin port).
pub struct HttpOnly<H>(pub crate::http::HttpServer<H>);

impl<H: crate::http::Handler> Connections for HttpOnly<H> {
    async fn serve(self: Arc<Self>, a: Accepted) {
        let info = crate::http::ConnectionInfo::default();
        self.0
            .serve_connection(a.stream, a.peer, info, a.watcher)
            .await
    }
}

/// Protocol detection as the bootstrap sets it.
pub struct DetectSettings {
    pub timeout: Duration,
    pub opaque_ports: OpaquePorts,
    pub stats: Arc<DetectStats>,
}

/// What every listener's connections share.
pub struct Context {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub detect: DetectSettings,
    /// Transparent mode: carry connections to addresses outside the mesh.
    pub passthrough: bool,
    /// How long a passthrough connection may idle.
    pub passthrough_idle: Duration,
    pub connect_timeout: Duration,
    /// The app's address: inbound TCP goes to its declared ports there...
    pub app_ip: IpAddr,
    /// ...unless the bootstrap's `app_ports` says otherwise.
    pub app_ports: std::collections::BTreeMap<u16, std::net::SocketAddr>,
    /// The proxy's own listeners, never an app port.
    pub own_listeners: crate::http::target_port::OwnListeners,
    pub inbound_stats: Arc<InboundStats>,
}
