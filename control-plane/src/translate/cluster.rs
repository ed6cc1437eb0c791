//! Service port -> Cluster (EDS over ADS, least-request, HTTP/1.1 or HTTP/2).

use std::collections::HashMap;

use remora_proto::xds::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbConfig, LbPolicy, LeastRequestLbConfig,
};
use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::core::v3::{Http1ProtocolOptions, Http2ProtocolOptions};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use remora_proto::xds::google::protobuf::{Duration, UInt32Value};

use super::{encode, metadata, names};
use crate::resources::{Service, ServicePort};

/// The key of `typed_extension_protocol_options` for upstream HTTP options.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub fn cluster(service: &Service, port: &ServicePort) -> Cluster {
    let name = names::cluster(&service.key, port.port);
    Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(super::ads_config_source()),
            service_name: name.clone(),
        }),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        lb_policy: LbPolicy::LeastRequest as i32,
        lb_config: Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
            choice_count: Some(UInt32Value { value: 2 }),
            ..Default::default()
        })),
        typed_extension_protocol_options: HashMap::from([(
            HTTP_PROTOCOL_OPTIONS.to_owned(),
            encode::message(&protocol_options(port)),
        )]),
        metadata: Some(metadata::remora([
            ("service", metadata::string(&service.key.name)),
            ("namespace", metadata::string(&service.key.namespace)),
            ("port", metadata::number(port.port.into())),
        ])),
        name,
        ..Default::default()
    }
}

fn protocol_options(port: &ServicePort) -> HttpProtocolOptions {
    let protocol = if port.protocol.is_http2() {
        ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())
    } else {
        ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
    };
    HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(protocol),
            },
        )),
        ..Default::default()
    }
}
