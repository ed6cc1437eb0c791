use remora_proto::prost::{Message, Name};
use remora_proto::type_url;
use remora_proto::xds::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use remora_proto::xds::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, Address, SocketAddress,
};
use remora_proto::xds::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use remora_proto::xds::envoy::config::listener::v3::{filter, Filter, FilterChain};
use remora_proto::xds::envoy::config::route::v3::{
    route, route_action::ClusterSpecifier, route_match::PathSpecifier,
    weighted_cluster::ClusterWeight, Route as XdsRoute, RouteAction as XdsRouteAction,
    RouteMatch as XdsRouteMatch, VirtualHost, WeightedCluster,
};
use remora_proto::xds::envoy::extensions::filters::http::router::v3::Router;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use remora_proto::xds::google::protobuf::{Any, UInt32Value};

use super::*;
use crate::snapshot::Target;

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn cluster(name: &str) -> XdsCluster {
    XdsCluster {
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

fn assignment(name: &str, ip: &str, port: u32) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: ip.into(),
                            port_specifier: Some(PortSpecifier::PortValue(port)),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn listener(route_config: &str) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: "outbound".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: route_config.into(),
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

fn split_route(path: PathSpecifier, weights: &[(&str, u32)]) -> XdsRoute {
    XdsRoute {
        name: "split".into(),
        r#match: Some(XdsRouteMatch {
            path_specifier: Some(path),
            ..Default::default()
        }),
        action: Some(route::Action::Route(XdsRouteAction {
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: weights
                    .iter()
                    .map(|(name, w)| ClusterWeight {
                        name: (*name).into(),
                        weight: Some(UInt32Value { value: *w }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn route_config(route: XdsRoute) -> RouteConfiguration {
    RouteConfiguration {
        name: "outbound".into(),
        virtual_hosts: vec![VirtualHost {
            name: "default/orders:80".into(),
            domains: vec![
                "orders".into(),
                "orders.default.svc.cluster.local:80".into(),
            ],
            routes: vec![route],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn resources() -> Resources {
    let mut r = Resources::default();
    for (name, port) in [("v1", 9001), ("v2", 9002)] {
        r.clusters.insert(name.into(), any(&cluster(name)));
        r.endpoints
            .insert(name.into(), any(&assignment(name, "127.0.0.1", port)));
    }
    r.listeners
        .insert(OUTBOUND_LISTENER.into(), any(&listener("outbound")));
    r.routes.insert(
        "outbound".into(),
        any(&route_config(split_route(
            PathSpecifier::Prefix("/".into()),
            &[("v1", 80), ("v2", 20)],
        ))),
    );
    r.versions.insert(type_url::CLUSTER, "1".into());
    r
}

#[test]
fn a_complete_set_compiles_into_a_routable_snapshot() {
    let registry = EndpointRegistry::default();
    let snapshot = compile(&resources(), &registry).unwrap();
    assert!(snapshot.is_ready());
    let table = snapshot.outbound.as_ref().unwrap();
    for authority in [
        "orders",
        "orders:80",
        "ORDERS",
        "orders.default.svc.cluster.local:80",
    ] {
        assert!(table.virtual_host(authority).is_some(), "{authority}");
    }
    assert!(table.virtual_host("payments").is_none());
    let vh = table.virtual_host("orders").unwrap();
    let route = vh
        .route(&http::Method::GET, "/anything", &http::HeaderMap::new())
        .unwrap();
    let crate::snapshot::RouteAction::Split(split) = &route.action;
    assert_eq!(split.total, 100);
    match split.pick(85) {
        Some(Target::Cluster(c)) => assert_eq!(&*c.name, "v2"),
        other => panic!("unexpected target {other:?}"),
    }
    assert_eq!(
        resources().subscriptions().unwrap(),
        Subscriptions {
            routes: vec!["outbound".into()],
            endpoints: vec!["v1".into(), "v2".into()],
        }
    );
}

#[test]
fn endpoint_state_survives_a_recompile() {
    let registry = EndpointRegistry::default();
    let first = compile(&resources(), &registry).unwrap();
    let mut changed = resources();
    changed.routes.insert(
        "outbound".into(),
        any(&route_config(split_route(
            PathSpecifier::Prefix("/".into()),
            &[("v1", 0), ("v2", 100)],
        ))),
    );
    let second = compile(&changed, &registry).unwrap();
    let endpoint = |s: &Snapshot| s.clusters["v1"].endpoints[0].endpoint.clone();
    assert!(Arc::ptr_eq(&endpoint(&first), &endpoint(&second)));
}

/// `metadata.filter_metadata["remora"]` with these fields.
fn remora(
    fields: &[(&str, remora_proto::xds::google::protobuf::value::Kind)],
) -> remora_proto::xds::envoy::config::core::v3::Metadata {
    use remora_proto::xds::google::protobuf::{Struct, Value};
    remora_proto::xds::envoy::config::core::v3::Metadata {
        filter_metadata: [(
            "remora".to_owned(),
            Struct {
                fields: fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            (*k).to_owned(),
                            Value {
                                kind: Some(v.clone()),
                            },
                        )
                    })
                    .collect(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

#[test]
fn a_meshed_endpoint_without_identity_is_used_only_where_the_cluster_allows_it() {
    use remora_proto::xds::google::protobuf::value::Kind;
    let mut r = resources();
    let mut cla = assignment("v1", "127.0.0.1", 9001);
    cla.endpoints[0].lb_endpoints[0].metadata = Some(remora(&[
        ("meshed", Kind::BoolValue(true)),
        ("identity", Kind::StringValue(String::new())),
    ]));
    r.endpoints.insert("v1".into(), any(&cla));
    let registry = EndpointRegistry::default();
    let snapshot = compile(&r, &registry).unwrap();
    assert!(snapshot.clusters["v1"].endpoints.is_empty());

    let mut allowing = cluster("v1");
    allowing.metadata = Some(remora(&[(
        "allow_unauthenticated_endpoints",
        Kind::BoolValue(true),
    )]));
    r.clusters.insert("v1".into(), any(&allowing));
    let snapshot = compile(&r, &registry).unwrap();
    assert_eq!(snapshot.clusters["v1"].endpoints.len(), 1);
}

#[test]
fn a_cluster_carries_its_target_port_and_a_bad_one_is_rejected_naming_the_field() {
    use remora_proto::xds::google::protobuf::value::Kind;
    let mut r = resources();
    let registry = EndpointRegistry::default();
    let snapshot = compile(&r, &registry).unwrap();
    assert_eq!(snapshot.clusters["v1"].target_port, None);

    let mut targeted = cluster("v1");
    targeted.metadata = Some(remora(&[("target_port", Kind::NumberValue(8080.0))]));
    r.clusters.insert("v1".into(), any(&targeted));
    let snapshot = compile(&r, &registry).unwrap();
    let target = snapshot.clusters["v1"].target_port.clone().unwrap();
    assert_eq!(target.port, 8080);
    assert_eq!(target.header, "8080");

    for (bad, shown) in [
        (Kind::NumberValue(0.0), "0"),
        (Kind::NumberValue(65536.0), "65536"),
        (Kind::NumberValue(80.5), "80.5"),
        (Kind::StringValue("http".into()), "\"http\""),
    ] {
        targeted.metadata = Some(remora(&[("target_port", bad)]));
        r.clusters.insert("v1".into(), any(&targeted));
        let err = compile(&r, &registry).unwrap_err();
        assert_eq!((err.kind, err.name.as_str()), ("Cluster", "v1"));
        assert_eq!(err.field, "metadata.filter_metadata.remora.target_port");
        assert_eq!(
            err.message,
            format!("{shown} is not a port (a whole number from 1 to 65535)")
        );
    }
}

#[test]
fn an_unsupported_match_is_rejected_naming_the_resource_and_field() {
    use remora_proto::xds::envoy::r#type::matcher::v3::RegexMatcher;
    let mut r = resources();
    r.routes.insert(
        "outbound".into(),
        any(&route_config(split_route(
            PathSpecifier::SafeRegex(RegexMatcher {
                regex: ".*".into(),
                ..Default::default()
            }),
            &[("v1", 1)],
        ))),
    );
    let err = compile(&r, &EndpointRegistry::default()).unwrap_err();
    assert_eq!(err.kind, "RouteConfiguration");
    assert_eq!(err.name, "outbound");
    assert_eq!(err.field, "virtual_hosts[0].routes[0].match.path_specifier");
}

#[test]
fn all_zero_weights_are_rejected() {
    let mut r = resources();
    r.routes.insert(
        "outbound".into(),
        any(&route_config(split_route(
            PathSpecifier::Prefix("/".into()),
            &[("v1", 0), ("v2", 0)],
        ))),
    );
    let err = compile(&r, &EndpointRegistry::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("weighted_clusters: the weights add up to zero"),
        "{err}"
    );
}

#[test]
fn a_bad_endpoint_address_is_rejected() {
    let mut r = resources();
    r.endpoints
        .insert("v1".into(), any(&assignment("v1", "not-an-ip", 9001)));
    let err = compile(&r, &EndpointRegistry::default()).unwrap_err();
    assert_eq!(err.kind, "ClusterLoadAssignment");
    assert_eq!(
        err.field,
        "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address"
    );
    let mut r = resources();
    r.endpoints
        .insert("v1".into(), any(&assignment("v1", "127.0.0.1", 0)));
    assert!(compile(&r, &EndpointRegistry::default()).is_err());
}

#[test]
fn unsupported_cluster_settings_are_rejected() {
    let mut r = resources();
    let mut c = cluster("v1");
    c.lb_policy = LbPolicy::ClusterProvided as i32;
    r.clusters.insert("v1".into(), any(&c));
    let err = compile(&r, &EndpointRegistry::default()).unwrap_err();
    assert_eq!((err.kind, err.field.as_str()), ("Cluster", "lb_policy"));
}

#[test]
fn a_listener_without_the_router_filter_is_rejected() {
    let mut r = resources();
    let mut l = listener("outbound");
    let Some(filter::ConfigType::TypedConfig(any_hcm)) =
        &mut l.filter_chains[0].filters[0].config_type
    else {
        unreachable!()
    };
    let mut hcm = HttpConnectionManager::decode(any_hcm.value.as_slice()).unwrap();
    hcm.http_filters.clear();
    *any_hcm = any(&hcm);
    r.listeners.insert(OUTBOUND_LISTENER.into(), any(&l));
    let err = compile(&r, &EndpointRegistry::default()).unwrap_err();
    assert_eq!(err.kind, "Listener");
    assert!(err.field.ends_with("http_filters"), "{err}");
}

#[test]
fn a_route_to_an_unknown_cluster_compiles_to_a_missing_target() {
    let mut r = resources();
    r.routes.insert(
        "outbound".into(),
        any(&route_config(split_route(
            PathSpecifier::Prefix("/".into()),
            &[("v9", 1)],
        ))),
    );
    let snapshot = compile(&r, &EndpointRegistry::default()).unwrap();
    let table = snapshot.outbound.unwrap();
    let route = &table.virtual_hosts[0].routes[0];
    let crate::snapshot::RouteAction::Split(split) = &route.action;
    assert!(matches!(split.pick(0), Some(Target::Missing(_))));
}

mod origin_tls {
    use remora_proto::xds::envoy::config::core::v3::{
        data_source, transport_socket, DataSource, TransportSocket,
    };
    use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, CertificateValidationContext, CommonTlsContext,
        UpstreamTlsContext,
    };

    use super::*;
    use crate::upstream::Transport;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn with_tls(tls: UpstreamTlsContext) -> Resources {
        let mut r = resources();
        let mut c = cluster("v1");
        c.transport_socket = Some(TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(&tls))),
        });
        r.clusters.insert("v1".into(), any(&c));
        r
    }

    fn verified_by(ca: Option<String>) -> UpstreamTlsContext {
        UpstreamTlsContext {
            sni: "v1.example.test".into(),
            common_tls_context: Some(CommonTlsContext {
                validation_context_type: Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: ca.map(|pem| DataSource {
                            specifier: Some(data_source::Specifier::InlineString(pem)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn unmeshed_endpoints_of_a_tls_cluster_use_tls() {
        let registry = EndpointRegistry::default();
        let snapshot = compile(&with_tls(verified_by(Some(ca_pem()))), &registry).unwrap();
        let v1 = &snapshot.clusters["v1"].endpoints[0].endpoint;
        assert_eq!(v1.transport(), Transport::TlsH1);
        assert_eq!(
            v1.origin_authority().map(|a| a.as_str()),
            Some("v1.example.test:9001")
        );
        let v2 = &snapshot.clusters["v2"].endpoints[0].endpoint;
        assert_eq!(v2.transport(), Transport::PlainH1);
    }

    #[test]
    fn an_unverified_server_is_refused() {
        let registry = EndpointRegistry::default();
        let e = compile(&with_tls(verified_by(None)), &registry).unwrap_err();
        assert_eq!(e.kind, "Cluster");
        assert_eq!(
            e.field,
            "transport_socket.typed_config.common_tls_context.validation_context"
        );
        let e = compile(&with_tls(UpstreamTlsContext::default()), &registry).unwrap_err();
        assert!(e.message.contains("must be verified"), "{e}");
        let e = compile(&with_tls(verified_by(Some("not pem".into()))), &registry).unwrap_err();
        assert!(e.message.contains("trusted_ca"), "{e}");
    }
}

#[test]
fn route_timeouts_and_retries_compile_and_unknown_conditions_are_refused() {
    use remora_proto::xds::envoy::config::route::v3::RetryPolicy as XdsRetry;
    use remora_proto::xds::google::protobuf::Duration as XdsDuration;
    let with_retry = |retry_on: &str| {
        let mut route = split_route(PathSpecifier::Prefix("/".into()), &[("v1", 1)]);
        if let Some(route::Action::Route(a)) = &mut route.action {
            a.timeout = Some(XdsDuration {
                seconds: 0,
                nanos: 0,
            });
            a.retry_policy = Some(XdsRetry {
                retry_on: retry_on.into(),
                num_retries: Some(UInt32Value { value: 2 }),
                per_try_timeout: Some(XdsDuration {
                    seconds: 0,
                    nanos: 200_000_000,
                }),
                retriable_status_codes: vec![503],
                ..Default::default()
            });
        }
        let mut r = resources();
        r.routes
            .insert("outbound".into(), any(&route_config(route)));
        r
    };
    let registry = EndpointRegistry::default();
    let snapshot = compile(
        &with_retry("5xx,retriable-status-codes,unavailable"),
        &registry,
    )
    .unwrap();
    let route = &snapshot.outbound.as_ref().unwrap().virtual_hosts[0].routes[0];
    assert_eq!(route.policy.timeout, None, "0s disables the timeout");
    let retry = route.policy.retry.as_ref().unwrap();
    assert!(retry.on.server_error && retry.on.listed_statuses);
    assert_eq!(retry.grpc_codes, 1 << 14);
    assert_eq!(retry.retries, 2);
    assert_eq!(
        retry.per_try_timeout,
        Some(std::time::Duration::from_millis(200))
    );
    let e = compile(&with_retry("5xx,sometimes"), &registry).unwrap_err();
    assert_eq!(
        e.field,
        "virtual_hosts[0].routes[0].route.retry_policy.retry_on"
    );
    assert!(e.message.contains("`sometimes`"), "{e}");
}

/// Compiles `r` after `previous` as the xDS client does, keeping the memo.
fn compiled_after(
    previous: Option<&Resources>,
    mut r: Resources,
    registry: &EndpointRegistry,
) -> (Resources, Snapshot) {
    let (snapshot, memo) = compile_from(previous, &r, registry).unwrap();
    r.memo = memo;
    (r, snapshot)
}

fn routed_to(snapshot: &Snapshot, draw: u32) -> Arc<crate::upstream::Cluster> {
    let table = snapshot.outbound.as_ref().unwrap();
    let route = &table.virtual_hosts[0].routes[0];
    let crate::snapshot::RouteAction::Split(split) = &route.action;
    match split.pick(draw) {
        Some(Target::Cluster(c)) => c.clone(),
        other => panic!("unexpected target {other:?}"),
    }
}

#[test]
fn an_endpoint_update_recompiles_only_the_cluster_whose_assignment_changed() {
    let registry = EndpointRegistry::default();
    let (first, before) = compiled_after(None, resources(), &registry);
    let mut next = first.clone();
    next.endpoints
        .insert("v2".into(), any(&assignment("v2", "127.0.0.1", 9102)));
    let (_, after) = compiled_after(Some(&first), next, &registry);
    assert!(Arc::ptr_eq(&before.clusters["v1"], &after.clusters["v1"]));
    assert!(!Arc::ptr_eq(&before.clusters["v2"], &after.clusters["v2"]));
    let addrs: Vec<_> = after.clusters["v2"]
        .endpoints
        .iter()
        .map(|e| e.endpoint.addr())
        .collect();
    assert_eq!(addrs, vec!["127.0.0.1:9102".parse().unwrap()]);
    // The route sends to the new v2 and the same v1.
    assert!(Arc::ptr_eq(&routed_to(&after, 85), &after.clusters["v2"]));
    assert!(Arc::ptr_eq(&routed_to(&after, 0), &after.clusters["v1"]));
}

#[test]
fn an_unchanged_update_shares_every_cluster_and_virtual_host() {
    let registry = EndpointRegistry::default();
    let (first, before) = compiled_after(None, resources(), &registry);
    let (_, after) = compiled_after(Some(&first), first.clone(), &registry);
    for name in ["v1", "v2"] {
        assert!(Arc::ptr_eq(&before.clusters[name], &after.clusters[name]));
    }
    let (a, b) = (
        &before.outbound.as_ref().unwrap().virtual_hosts[0],
        &after.outbound.as_ref().unwrap().virtual_hosts[0],
    );
    assert!(Arc::ptr_eq(a, b));
}

#[test]
fn a_removed_assignment_leaves_its_cluster_without_endpoints() {
    let registry = EndpointRegistry::default();
    let (first, before) = compiled_after(None, resources(), &registry);
    let mut next = first.clone();
    next.endpoints.remove("v2");
    let (_, after) = compiled_after(Some(&first), next, &registry);
    assert!(after.clusters["v2"].endpoints.is_empty());
    assert!(Arc::ptr_eq(&before.clusters["v1"], &after.clusters["v1"]));
}

#[test]
fn a_cluster_update_recompiles_that_cluster_and_the_routes_to_it() {
    let registry = EndpointRegistry::default();
    let (first, before) = compiled_after(None, resources(), &registry);
    let mut next = first.clone();
    let mut v1 = cluster("v1");
    v1.lb_policy = LbPolicy::RoundRobin as i32;
    next.clusters.insert("v1".into(), any(&v1));
    let (_, after) = compiled_after(Some(&first), next, &registry);
    assert!(!Arc::ptr_eq(&before.clusters["v1"], &after.clusters["v1"]));
    assert!(matches!(
        after.clusters["v1"].balancer,
        crate::balance::Balancer::RoundRobin(_)
    ));
    assert!(Arc::ptr_eq(&before.clusters["v2"], &after.clusters["v2"]));
    assert!(Arc::ptr_eq(&routed_to(&after, 0), &after.clusters["v1"]));
}

#[test]
fn endpoint_state_is_kept_for_unchanged_and_changed_clusters() {
    let registry = EndpointRegistry::default();
    let (first, before) = compiled_after(None, resources(), &registry);
    let endpoint = |s: &Snapshot, c: &str, i: usize| s.clusters[c].endpoints[i].endpoint.clone();
    // v2 gains an endpoint; the one it had stays the same object (its
    // outlier state and latency estimate with it), as does v1's.
    let mut grown = assignment("v2", "127.0.0.1", 9002);
    let mut extra = assignment("v2", "127.0.0.1", 9012).endpoints;
    grown.endpoints.append(&mut extra);
    let mut next = first.clone();
    next.endpoints.insert("v2".into(), any(&grown));
    let (_, after) = compiled_after(Some(&first), next, &registry);
    assert!(Arc::ptr_eq(
        &endpoint(&before, "v1", 0),
        &endpoint(&after, "v1", 0)
    ));
    assert!(Arc::ptr_eq(
        &endpoint(&before, "v2", 0),
        &endpoint(&after, "v2", 0)
    ));
    assert_eq!(after.clusters["v2"].endpoints.len(), 2);
    assert!(Arc::ptr_eq(
        &before.clusters["v2"].state,
        &after.clusters["v2"].state
    ));
}

#[test]
fn a_bad_assignment_is_refused_as_a_full_compile_refuses_it() {
    let registry = EndpointRegistry::default();
    let (first, _) = compiled_after(None, resources(), &registry);
    let mut next = first.clone();
    next.endpoints
        .insert("v2".into(), any(&assignment("v2", "not-an-ip", 9002)));
    let incremental = compile_from(Some(&first), &next, &registry).unwrap_err();
    next.memo = Memo::default();
    let full = compile(&next, &registry).unwrap_err();
    assert_eq!(incremental, full);
    assert_eq!(incremental.kind, "ClusterLoadAssignment");
}
