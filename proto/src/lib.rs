//! Protobuf types for Remora.
//!
//! - [`xds`]: the Envoy xDS v3 types and services (from `envoy-types`), re-exported
//!   so the proxy and the control plane agree on one version. Its well-known types
//!   (`xds::google::protobuf::Any`, `Struct`, ...) are the ones xDS messages use.
//! - [`demo`]: Remora's own demo/test service (`remora.demo.v1.Echo`).
//! - [`identity`]: how a proxy gets its certificate (`remora.identity.v1.Identity`).
//! - [`telemetry`]: proxies' traffic reports (`remora.telemetry.v1.Telemetry`).
//! - [`lb`]: Remora's own load-balancing policies (`remora.lb.v1`), carried in a
//!   Cluster's `load_balancing_policy` list.
//! - [`otlp`]: the OpenTelemetry protocol's trace export (spans, `TraceService`).
#![forbid(unsafe_code)]

pub use envoy_types::pb as xds;
pub use opentelemetry_proto::tonic as otlp;
pub use prost;

/// `remora.demo.v1`: the echo service used by the demo and the end-to-end tests.
pub mod demo {
    #![allow(clippy::all)]
    tonic::include_proto!("remora.demo.v1");
}

/// `remora.identity.v1`: CSR + bootstrap token -> workload certificate.
pub mod identity {
    #![allow(clippy::all)]
    tonic::include_proto!("remora.identity.v1");
}

/// `remora.telemetry.v1`: proxies report their hops' counters to the control plane.
pub mod telemetry {
    #![allow(clippy::all)]
    tonic::include_proto!("remora.telemetry.v1");
}

/// `remora.lb.v1`: load-balancing policies only Remora's proxy knows.
pub mod lb {
    #![allow(clippy::all)]
    tonic::include_proto!("remora.lb.v1");
}

/// Type URLs of the xDS resources Remora serves and consumes.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const HTTP_CONNECTION_MANAGER: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    pub const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    pub const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
    pub const NETWORK_RBAC: &str =
        "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
    pub const TCP_PROXY: &str =
        "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
    pub const DOWNSTREAM_TLS_CONTEXT: &str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
    pub const UPSTREAM_TLS_CONTEXT: &str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
    pub const HTTP_PROTOCOL_OPTIONS: &str =
        "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    /// Remora's peak-EWMA balancer in a Cluster's `load_balancing_policy`.
    pub const PEAK_EWMA: &str = "type.googleapis.com/remora.lb.v1.PeakEwma";

    /// The order in which a change is pushed: what is referenced goes before what
    /// references it (make before break).
    pub const PUSH_ORDER: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];
}
