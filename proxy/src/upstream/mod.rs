//! Upstream state that outlives config: endpoints (latency estimate, requests in
//! flight, their connection) and the clusters a snapshot groups them into, with
//! their circuit breakers (`breaker`) and outlier detection (`outlier`).

mod body;
mod breaker;
mod cluster;
mod endpoint;
mod h2;
mod origin;
mod outlier;
mod registry;

pub use body::{Recorded, RequestBody};
pub use breaker::{ActiveRequest, BreakerState, Concurrency, Limit, Limits, OpenConnection};
pub use cluster::{Cluster, ClusterState, ClusterStats, Protocol, TargetPort, WeightedEndpoint};
pub use endpoint::{Endpoint, InFlight, Transport, UpstreamError};
pub use h2::{H2Connection, TlsTarget, CONNECTION_WINDOW, STREAM_WINDOW};
pub use origin::{OriginClient, OriginTls};
pub use outlier::{Outlier, OutlierConfig, Verdict};
pub use registry::{EndpointRegistry, Peer};

/// Connect timeout when the cluster does not set one.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long an upstream connection may sit idle when the cluster does not say
/// (Envoy's `idle_timeout` default).
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A cluster's connection timeouts; endpoints with different ones are different
/// endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionTimeouts {
    pub connect: std::time::Duration,
    /// A connection with no request for this long is closed.
    pub idle: std::time::Duration,
}

impl ConnectionTimeouts {
    pub const DEFAULT: ConnectionTimeouts = ConnectionTimeouts {
        connect: DEFAULT_CONNECT_TIMEOUT,
        idle: DEFAULT_IDLE_TIMEOUT,
    };
}
