//! The listener `outbound` of Remora proxies: HTTP goes to RDS `outbound`; the
//! listener also carries opaque TCP ports and cluster IPs (`outbound_chains`).
//! gRPC's API listeners are in `proxyless.rs`; they share the HTTP connection
//! manager built here.

use std::net::{Ipv4Addr, SocketAddr};

use remora_proto::xds::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use remora_proto::xds::envoy::extensions::filters::http::router::v3::Router;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter, Rds,
};

use super::{ads_config_source, encode, filters, names, outbound_chains, socket_address};
use crate::store::Store;

pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
pub const ROUTER: &str = "envoy.filters.http.router";
/// Informational: a proxy binds what its bootstrap says.
const OUTBOUND_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7001);

/// The outbound listener. Its first filter chain, matching any connection, is
/// the HTTP connection manager: fault filters for the Services that inject faults
/// and a rate limit filter when routes carry limits, before the router. The
/// chains after it pick connections by their original destination.
pub fn outbound(store: &Store) -> Listener {
    let mut hcm = http_connection_manager(names::OUTBOUND, names::OUTBOUND);
    let mut filters = filters::outbound_faults(store);
    filters.extend(filters::outbound_rate_limit(store));
    filters.append(&mut hcm.http_filters);
    hcm.http_filters = filters;
    let http = Filter {
        name: HTTP_CONNECTION_MANAGER.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(encode::message(&hcm))),
    };
    let mut filter_chains = outbound_chains::chains(store, &http);
    filter_chains.insert(
        0,
        FilterChain {
            filters: vec![http],
            ..Default::default()
        },
    );
    Listener {
        name: names::OUTBOUND.to_owned(),
        address: Some(socket_address(OUTBOUND_ADDRESS)),
        filter_chains,
        ..Default::default()
    }
}

/// Routes from RDS `routes` over ADS, then only the router (gRPC wants the
/// router last, with a typed config).
pub fn http_connection_manager(stat_prefix: &str, routes: &str) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: stat_prefix.to_owned(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: routes.to_owned(),
        })),
        http_filters: vec![HttpFilter {
            name: ROUTER.to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(encode::message(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    }
}
