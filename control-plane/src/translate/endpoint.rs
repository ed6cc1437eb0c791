//! Service port -> ClusterLoadAssignment: the connected proxies of the Service
//! (meshed) and its static endpoints (unmeshed).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use remora_proto::xds::envoy::config::core::v3::{HealthStatus, Locality};
use remora_proto::xds::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use remora_proto::xds::google::protobuf::UInt32Value;

use super::{metadata, names, socket_address, MeshEndpoint};
use crate::resources::{Service, ServicePort};

/// `meshed` are the Service's connected proxies; each one's inbound address serves
/// every port. An address appears once (gRPC rejects duplicates): a proxy wins over
/// a static endpoint at the same address.
pub fn assignment(
    service: &Service,
    port: &ServicePort,
    meshed: &[&MeshEndpoint],
) -> ClusterLoadAssignment {
    let mut by_address: BTreeMap<SocketAddr, Option<&MeshEndpoint>> = BTreeMap::new();
    for e in meshed {
        by_address.entry(e.address).or_insert(Some(*e));
    }
    for e in service
        .endpoints
        .iter()
        .filter(|e| e.service_port == port.port)
    {
        by_address
            .entry(SocketAddr::new(e.address, e.port))
            .or_insert(None);
    }
    let lb_endpoints: Vec<LbEndpoint> = by_address
        .into_iter()
        .map(|(address, proxy)| lb_endpoint(address, proxy))
        .collect();
    let endpoints = if lb_endpoints.is_empty() {
        Vec::new()
    } else {
        vec![LocalityLbEndpoints {
            // gRPC rejects a locality without an ID and ignores one without a weight.
            locality: Some(Locality::default()),
            lb_endpoints,
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            ..Default::default()
        }]
    };
    ClusterLoadAssignment {
        cluster_name: names::cluster(&service.key, port.port),
        endpoints,
        ..Default::default()
    }
}

fn lb_endpoint(address: SocketAddr, proxy: Option<&MeshEndpoint>) -> LbEndpoint {
    // Static endpoints have no node: their node_id and identity are empty. A
    // meshed endpoint's identity is what a caller's proxy verifies it presents.
    let metadata = metadata::remora([
        ("meshed", metadata::boolean(proxy.is_some())),
        (
            "node_id",
            metadata::string(proxy.map_or("", |p| p.node_id.as_str())),
        ),
        (
            "identity",
            metadata::string(
                proxy
                    .and_then(|p| p.identity.as_deref())
                    .unwrap_or_default(),
            ),
        ),
    ]);
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(address)),
            ..Default::default()
        })),
        health_status: HealthStatus::Healthy as i32,
        load_balancing_weight: Some(UInt32Value { value: 1 }),
        metadata: Some(metadata),
    }
}
