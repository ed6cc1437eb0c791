//! The inbound listener of each Service: how its proxies accept connections (mTLS
//! only when STRICT; mTLS or plaintext when PERMISSIVE, told apart by the TLS
//! inspector) and who may call it (RBAC filters). The proxy serves with its own
//! workload certificate and forwards to its app as its bootstrap says, so the TLS
//! context carries no certificate and the route table is empty.

use std::net::{Ipv4Addr, SocketAddr};

use remora_proto::xds::envoy::config::core::v3::{
    transport_socket, TrafficDirection, TransportSocket,
};
use remora_proto::xds::envoy::config::listener::v3::{
    filter, listener_filter, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use remora_proto::xds::envoy::config::route::v3::RouteConfiguration;
use remora_proto::xds::envoy::extensions::filters::http::router::v3::Router;
use remora_proto::xds::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter,
};
use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::{
    tls_parameters::TlsProtocol, CommonTlsContext, DownstreamTlsContext, TlsParameters,
};
use remora_proto::xds::google::protobuf::BoolValue;

use super::listener::{HTTP_CONNECTION_MANAGER, ROUTER};
use super::{authorization, encode, names, socket_address};
use crate::resources::{Service, TlsMode};
use crate::store::Store;

pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
/// Informational: a proxy binds what its bootstrap says.
const INBOUND_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7002);

pub fn listener(store: &Store, service: &Service, trust_domain: &str) -> Listener {
    let name = names::inbound(&service.key);
    let hcm = Filter {
        name: HTTP_CONNECTION_MANAGER.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(encode::message(
            &http_connection_manager(&name, store, service, trust_domain),
        ))),
    };
    let mut filter_chains = vec![FilterChain {
        name: "mtls".to_owned(),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "tls".to_owned(),
            ..Default::default()
        }),
        transport_socket: Some(TransportSocket {
            name: TLS_TRANSPORT_SOCKET.to_owned(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(encode::message(
                &mesh_tls(),
            ))),
        }),
        filters: vec![hcm.clone()],
        ..Default::default()
    }];
    let mode = store.tls_mode(&service.key);
    if mode == TlsMode::Permissive {
        filter_chains.push(FilterChain {
            name: "plaintext".to_owned(),
            filter_chain_match: Some(FilterChainMatch {
                transport_protocol: "raw_buffer".to_owned(),
                ..Default::default()
            }),
            filters: vec![hcm],
            ..Default::default()
        });
    }
    Listener {
        name,
        address: Some(socket_address(INBOUND_ADDRESS)),
        traffic_direction: TrafficDirection::Inbound as i32,
        listener_filters: vec![ListenerFilter {
            name: TLS_INSPECTOR.to_owned(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(encode::message(
                &TlsInspector::default(),
            ))),
            ..Default::default()
        }],
        filter_chains,
        ..Default::default()
    }
}

/// TLS 1.3 with a client certificate required, HTTP/2 between proxies.
fn mesh_tls() -> DownstreamTlsContext {
    DownstreamTlsContext {
        require_client_certificate: Some(BoolValue { value: true }),
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: TlsProtocol::TlSv13 as i32,
                ..Default::default()
            }),
            alpn_protocols: vec!["h2".to_owned()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_connection_manager(
    name: &str,
    store: &Store,
    service: &Service,
    trust_domain: &str,
) -> HttpConnectionManager {
    let mut http_filters: Vec<HttpFilter> = authorization::filters(store, service, trust_domain)
        .into_iter()
        .map(|config| HttpFilter {
            name: authorization::RBAC_FILTER.to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(config)),
            ..Default::default()
        })
        .collect();
    http_filters.extend(super::filters::inbound_rate_limit(store, &service.key));
    http_filters.push(HttpFilter {
        name: ROUTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(encode::message(
            &Router::default(),
        ))),
        ..Default::default()
    });
    HttpConnectionManager {
        stat_prefix: name.to_owned(),
        route_specifier: Some(RouteSpecifier::RouteConfig(RouteConfiguration {
            name: names::INBOUND_ROUTES.to_owned(),
            ..Default::default()
        })),
        http_filters,
        ..Default::default()
    }
}
