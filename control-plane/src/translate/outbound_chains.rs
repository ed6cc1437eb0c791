//! The outbound listener's filter chains after the first (the HTTP connection
//! manager, which a proxy reads for HTTP): one per Service port that a connection
//! is routed to by its original destination, for every Service, in namespace,
//! name, then port order.
//!
//! - An opaque port: `tcp|<port>||<fqdn>`, matched by the destination port and,
//!   when the Service has one, its cluster IP; a TCP proxy to the port's cluster.
//! - An HTTP port of a Service with a cluster IP: `http|<port>||<fqdn>`, matched
//!   by both; the first chain's HTTP connection manager, and in its metadata the
//!   authority (`<fqdn>:<port>`, a domain of the port's virtual host) that routes
//!   a request whose `Host` names no Service.

use std::net::IpAddr;

use remora_proto::xds::envoy::config::core::v3::{CidrRange, Metadata};
use remora_proto::xds::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch};
use remora_proto::xds::google::protobuf::UInt32Value;

use super::{metadata, names, tcp_proxy};
use crate::resources::{Service, ServicePort};
use crate::store::Store;

/// `http`: the outbound HTTP connection manager filter, as in the first chain.
pub fn chains(store: &Store, http: &Filter) -> Vec<FilterChain> {
    let mut out = Vec::new();
    for service in store.services() {
        let mut ports: Vec<&ServicePort> = service.ports.iter().collect();
        ports.sort_by_key(|p| p.port);
        for port in ports {
            if port.protocol.is_opaque() {
                out.push(tcp_chain(store, service, port));
            } else if let Some(ip) = service.cluster_ip {
                out.push(http_chain(service, port, ip, http.clone()));
            }
        }
    }
    out
}

fn tcp_chain(store: &Store, service: &Service, port: &ServicePort) -> FilterChain {
    let cluster = names::cluster(&service.key, port.port);
    FilterChain {
        name: names::outbound_tcp_chain(&service.key, port.port),
        filter_chain_match: Some(destination(port.port, service.cluster_ip)),
        filters: vec![tcp_proxy::filter(store, &service.key, &cluster, &cluster)],
        metadata: Some(chain_metadata(service, port, None)),
        ..Default::default()
    }
}

fn http_chain(service: &Service, port: &ServicePort, ip: IpAddr, http: Filter) -> FilterChain {
    let authority = names::authority(&service.key, port.port);
    FilterChain {
        name: names::outbound_http_chain(&service.key, port.port),
        filter_chain_match: Some(destination(port.port, Some(ip))),
        filters: vec![http],
        metadata: Some(chain_metadata(service, port, Some(&authority))),
        ..Default::default()
    }
}

/// `metadata.remora`: `{service, namespace, port, protocol}` (the `appProtocol`
/// as written), plus `authority` for an HTTP chain.
fn chain_metadata(service: &Service, port: &ServicePort, authority: Option<&str>) -> Metadata {
    let mut m = metadata::remora([
        ("service", metadata::string(&service.key.name)),
        ("namespace", metadata::string(&service.key.namespace)),
        ("port", metadata::number(port.port.into())),
        ("protocol", metadata::string(port.protocol.as_str())),
    ]);
    if let (Some(authority), Some(remora)) =
        (authority, m.filter_metadata.get_mut(names::METADATA_KEY))
    {
        remora
            .fields
            .insert("authority".to_owned(), metadata::string(authority));
    }
    m
}

/// Connections to `port`, at `cluster_ip` when there is one.
fn destination(port: u16, cluster_ip: Option<IpAddr>) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: Some(UInt32Value { value: port.into() }),
        prefix_ranges: cluster_ip.map(single_address).into_iter().collect(),
        ..Default::default()
    }
}

/// The one address: `/32` for IPv4, `/128` for IPv6.
fn single_address(ip: IpAddr) -> CidrRange {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}
