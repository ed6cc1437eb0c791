//! The `envoy.filters.network.tcp_proxy` filter that carries an opaque TCP port's
//! connections, on the callers' outbound listener and the Service's inbound one.

use std::time::Duration;

use remora_proto::xds::envoy::config::listener::v3::{filter, Filter};
use remora_proto::xds::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};

use super::{encode, resilience};
use crate::resources::{ObjectKey, PolicyTarget};
use crate::store::Store;

pub const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
/// How long a connection may carry nothing before it is closed, when the
/// Service's TrafficPolicy sets no `timeouts.idle` (the same default as HTTP).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Connections to `cluster`, closed after the Service's idle timeout.
pub fn filter(store: &Store, service: &ObjectKey, stat_prefix: &str, cluster: &str) -> Filter {
    let idle = store
        .traffic_policy(&PolicyTarget::Service(service.clone()))
        .and_then(|p| p.timeouts.idle)
        .unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let config = TcpProxy {
        stat_prefix: stat_prefix.to_owned(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_owned())),
        idle_timeout: Some(resilience::duration(idle)),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY_FILTER.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(encode::message(&config))),
    }
}
