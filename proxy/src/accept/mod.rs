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

use crate::detect::{DetectStats, OpaquePorts};
use crate::http::InboundStats;
use crate::snapshot::Snapshot;
use crate::telemetry::Metrics;

pub use listener::{serve, Accepted, Connections};

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
    pub inbound_stats: Arc<InboundStats>,
}
