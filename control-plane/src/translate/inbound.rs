//! The inbound listener of each Service: how its proxies accept connections (mTLS
//! only when STRICT; mTLS or plaintext when PERMISSIVE, told apart by the TLS
//! inspector) and who may call it (RBAC filters). The proxy serves with its own
//! workload certificate and forwards to its app as its bootstrap says, so the TLS
//! context carries no certificate and the route table is empty.
//!
//! HTTP comes first (`mtls`, then `plaintext`), their metadata listing the app
//! ports behind the HTTP ports (`http_ports`) when any has a `targetPort`; then
//! each opaque TCP port has its own chains (`tcp|<target>`, then
//! `tcp|<target>|plaintext`), keyed by the app port behind it (what a peer's
//! transport header names, and where a redirected connection was going),
//! matched by that port and, over mTLS, by the ALPN a caller's proxy offers for
//! TCP ([`TCP_ALPN`]), with network RBAC filters before a TCP proxy to the app.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

use remora_proto::xds::envoy::config::core::v3::{
    transport_socket, Metadata, TrafficDirection, TransportSocket,
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
use remora_proto::xds::google::protobuf::{BoolValue, UInt32Value};

use super::listener::{HTTP_CONNECTION_MANAGER, ROUTER};
use super::{authorization, encode, metadata, names, socket_address, tcp_proxy};
use crate::resources::{Service, ServicePort, TlsMode};
use crate::store::Store;

pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
/// The ALPN of mesh HTTP between proxies.
pub const HTTP_ALPN: &str = "h2";
/// The ALPN a caller's proxy offers for an opaque TCP connection, which tells it
/// apart from mesh HTTP in the ClientHello, before the handshake.
pub const TCP_ALPN: &str = "remora-tcp/1";
const TLS: &str = "tls";
const RAW_BUFFER: &str = "raw_buffer";
/// The HTTP chains' metadata field listing the app ports behind the HTTP ports.
pub const HTTP_PORTS: &str = "http_ports";
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
    let http_metadata = http_ports(service);
    let mut filter_chains = vec![FilterChain {
        name: "mtls".to_owned(),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: TLS.to_owned(),
            ..Default::default()
        }),
        transport_socket: Some(mesh_tls(HTTP_ALPN)),
        filters: vec![hcm.clone()],
        metadata: http_metadata.clone(),
        ..Default::default()
    }];
    let mode = store.tls_mode(&service.key);
    if mode == TlsMode::Permissive {
        filter_chains.push(FilterChain {
            name: "plaintext".to_owned(),
            filter_chain_match: Some(FilterChainMatch {
                transport_protocol: RAW_BUFFER.to_owned(),
                ..Default::default()
            }),
            filters: vec![hcm],
            metadata: http_metadata,
            ..Default::default()
        });
    }
    filter_chains.extend(tcp_chains(store, service, trust_domain, mode));
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

/// `metadata.remora.http_ports`: the app ports behind the Service's HTTP
/// ports, sorted, which a peer may name in `remora-target-port`; `None` when no
/// HTTP port has a target (every request goes to the proxy's `app`, and the
/// listener encodes as it did before targets existed).
fn http_ports(service: &Service) -> Option<Metadata> {
    let ports: BTreeSet<u16> = service
        .ports
        .iter()
        .filter(|p| !p.protocol.is_opaque())
        .filter_map(|p| p.target_port)
        .collect();
    (!ports.is_empty()).then(|| {
        metadata::remora([(
            HTTP_PORTS,
            metadata::numbers(ports.into_iter().map(f64::from)),
        )])
    })
}

/// The chains of each opaque port, by the app port behind it (its target), in
/// that order: mTLS, and plaintext when PERMISSIVE. Both carry the same RBAC
/// filters: a plaintext connection proves no caller, so only rules without
/// `from` can allow it, as on the HTTP chains. Two Service ports with one
/// target share its chains (the lower port's protocol labels them): they
/// reach the same app port.
fn tcp_chains(
    store: &Store,
    service: &Service,
    trust_domain: &str,
    mode: TlsMode,
) -> Vec<FilterChain> {
    let mut ports: Vec<&ServicePort> = service
        .ports
        .iter()
        .filter(|p| p.protocol.is_opaque())
        .collect();
    ports.sort_by_key(|p| (p.target(), p.port));
    ports.dedup_by_key(|p| p.target());
    let mut out = Vec::new();
    for port in ports {
        let target = port.target();
        let cluster = names::inbound_cluster(target);
        let mut filters: Vec<Filter> =
            authorization::network_filters(store, service, trust_domain, &cluster)
                .into_iter()
                .map(|config| Filter {
                    name: authorization::NETWORK_RBAC_FILTER.to_owned(),
                    config_type: Some(filter::ConfigType::TypedConfig(config)),
                })
                .collect();
        filters.push(tcp_proxy::filter(store, &service.key, &cluster, &cluster));
        let metadata = metadata::remora([
            ("port", metadata::number(target.into())),
            ("protocol", metadata::string(port.protocol.as_str())),
        ]);
        let destination_port = Some(UInt32Value {
            value: target.into(),
        });
        out.push(FilterChain {
            name: names::inbound_tcp_chain(target),
            filter_chain_match: Some(FilterChainMatch {
                destination_port,
                transport_protocol: TLS.to_owned(),
                application_protocols: vec![TCP_ALPN.to_owned()],
                ..Default::default()
            }),
            transport_socket: Some(mesh_tls(TCP_ALPN)),
            filters: filters.clone(),
            metadata: Some(metadata.clone()),
            ..Default::default()
        });
        if mode == TlsMode::Permissive {
            out.push(FilterChain {
                name: names::inbound_plaintext_tcp_chain(target),
                filter_chain_match: Some(FilterChainMatch {
                    destination_port,
                    transport_protocol: RAW_BUFFER.to_owned(),
                    ..Default::default()
                }),
                filters,
                metadata: Some(metadata),
                ..Default::default()
            });
        }
    }
    out
}

/// TLS 1.3 with a client certificate required, negotiating `alpn`: the mesh
/// TLS of every TLS chain, which differ only in what they carry.
fn mesh_tls(alpn: &str) -> TransportSocket {
    let context = DownstreamTlsContext {
        require_client_certificate: Some(BoolValue { value: true }),
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: TlsProtocol::TlSv13 as i32,
                ..Default::default()
            }),
            alpn_protocols: vec![alpn.to_owned()],
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(encode::message(
            &context,
        ))),
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
