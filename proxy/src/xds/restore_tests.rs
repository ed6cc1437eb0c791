use remora_proto::prost::{Message, Name};
use remora_proto::type_url;
use remora_proto::xds::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, Address, SocketAddress,
};
use remora_proto::xds::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use remora_proto::xds::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use remora_proto::xds::envoy::config::route::v3::{
    route, route_action::ClusterSpecifier, route_match::PathSpecifier, Route, RouteAction,
    RouteConfiguration, RouteMatch, VirtualHost,
};
use remora_proto::xds::envoy::extensions::filters::http::router::v3::Router;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use remora_proto::xds::google::protobuf::{Any, UInt32Value};

use super::*;
use crate::compile::OUTBOUND_LISTENER;
use crate::state::Owner;

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            service_name: name.into(),
            ..Default::default()
        }),
        lb_policy: LbPolicy::LeastRequest as i32,
        ..Default::default()
    }
}

fn assignment(name: &str, port: u32) -> ClusterLoadAssignment {
    let endpoint = Endpoint {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(endpoint)),
                ..Default::default()
            }],
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn outbound_listener() -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: "outbound".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: "outbound".into(),
            config_source: None,
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: OUTBOUND_LISTENER.into(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn routes(cluster: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: "outbound".into(),
        virtual_hosts: vec![VirtualHost {
            name: "default/orders:80".into(),
            domains: vec!["orders".into()],
            routes: vec![Route {
                name: "all".into(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What an xDS client holds after the control plane sent one response of each
/// type, applied as the client applies them.
fn accepted(registry: &EndpointRegistry) -> Resources {
    let responses = [
        (type_url::CLUSTER, vec![any(&cluster("orders"))]),
        (type_url::ENDPOINT, vec![any(&assignment("orders", 9001))]),
        (type_url::LISTENER, vec![any(&outbound_listener())]),
        (type_url::ROUTE, vec![any(&routes("orders"))]),
    ];
    let mut accepted = Resources::default();
    for (i, (t, resources)) in responses.into_iter().enumerate() {
        let version = format!("v{i}");
        accepted = apply_response(&accepted, t, &version, &resources, registry)
            .unwrap()
            .0;
    }
    accepted
}

fn saved(types: Vec<SavedType>) -> SavedConfig {
    SavedConfig {
        owner: Owner {
            service: "web".into(),
            namespace: "default".into(),
            identity: "spiffe://cluster.local/ns/default/sa/web".into(),
        },
        node_id: "web-1".into(),
        saved_unix: 0,
        types,
    }
}

#[test]
fn a_saved_config_compiles_into_what_was_accepted() {
    let registry = EndpointRegistry::default();
    let before = accepted(&registry);
    let types = to_saved(&before);
    assert_eq!(types.len(), 4);
    let (after, snapshot) = from_saved(&saved(types), &registry).unwrap().unwrap();
    assert!(snapshot.is_ready(), "routes and clusters are back");
    assert_eq!(after.listeners, before.listeners);
    assert_eq!(after.routes, before.routes);
    assert_eq!(after.clusters, before.clusters);
    assert_eq!(after.endpoints, before.endpoints);
    assert_eq!(after.versions, before.versions);
    assert_eq!(snapshot.versions, before.versions);
    let orders = snapshot.clusters.get("orders").expect("the cluster");
    assert_eq!(orders.endpoints.len(), 1);
}

#[test]
fn a_saved_config_is_checked_as_a_response_would_be() {
    let registry = EndpointRegistry::default();
    let mut types = to_saved(&accepted(&registry));
    // A resource that does not decode is refused, as in a response.
    let route = types
        .iter_mut()
        .find(|t| t.type_url == type_url::ROUTE)
        .unwrap();
    route.resources[0].value = vec![0xff, 0xff, 0xff];
    let err = from_saved(&saved(types), &registry)
        .unwrap_err()
        .to_string();
    assert!(err.contains("RouteConfiguration"), "{err}");
}

#[test]
fn a_saved_config_without_known_types_is_nothing() {
    let registry = EndpointRegistry::default();
    let types = vec![SavedType {
        type_url: "type.googleapis.com/some.other.Type".into(),
        version: "1".into(),
        resources: vec![],
    }];
    assert!(from_saved(&saved(types), &registry).unwrap().is_none());
}
