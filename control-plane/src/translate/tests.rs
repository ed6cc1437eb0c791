use prost::Message;
use remora_proto::xds::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy,
};
use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::core::v3::{
    address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier, ApiVersion,
    HealthStatus, Metadata,
};
use remora_proto::xds::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use remora_proto::xds::envoy::config::listener::v3::{filter, Listener};
use remora_proto::xds::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
    route_match::PathSpecifier, RouteConfiguration, VirtualHost,
};
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use remora_proto::xds::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use remora_proto::xds::google::protobuf::{value::Kind, Any};

use super::*;
use crate::source::parse;
use crate::validate::validate;

const CONFIG: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 80}, {name: grpc, port: 9090, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: orders-v1}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: orders-v2}
spec:
  ports: [{port: 80, appProtocol: kubernetes.io/h2c}]
  endpoints:
  - {address: 127.0.0.1, port: 9002}
  - {address: 10.0.0.5, port: 7002}
---
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: shop}
spec:
  ports: [{port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders}
spec:
  parentRefs: [{kind: Service, name: orders, port: 80}]
  rules:
  - backendRefs:
    - {name: orders-v1, weight: 90}
    - {name: orders-v2, weight: 10}
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: X-Canary, value: 'yes'}]
      method: POST
    backendRefs: [{name: orders-v2}]
  - matches: [{path: {type: Exact, value: /health}}]
    backendRefs: [{name: orders-v1, weight: 0}, {name: orders-v2, weight: 1}, {name: orders-v2, weight: 2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: orders, namespace: default}]
  rules:
  - matches: [{path: {value: /shop}}]
    backendRefs: [{name: orders-v1, namespace: default}]
";

fn store() -> Store {
    let loaded = parse("config.yaml", CONFIG);
    let outcome = validate(&loaded.documents);
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    outcome.store
}

fn mesh_endpoint(service: &str, address: &str, node_id: &str) -> MeshEndpoint {
    MeshEndpoint {
        service: ObjectKey::new("default", service),
        address: address.parse().unwrap(),
        node_id: node_id.into(),
        // Endpoint authority: the Service's default account, from its own address.
        identity: Some(format!("spiffe://cluster.local/ns/default/sa/{service}")),
        peer: Some(address.parse().unwrap()),
        origin: crate::translate::Origin::Registered,
    }
}

pub(super) fn decode<M: Message + Default>(map: &ResourceMap, name: &str) -> M {
    let any = map.get(name).unwrap_or_else(|| {
        panic!(
            "no resource {name}; have {:?}",
            map.keys().collect::<Vec<_>>()
        )
    });
    M::decode(any.value.as_slice()).unwrap()
}

fn unpack<M: Message + Default + prost::Name>(any: &Any) -> M {
    assert_eq!(any.type_url, M::type_url());
    M::decode(any.value.as_slice()).unwrap()
}

pub(super) fn remora_fields(m: Option<&Metadata>) -> std::collections::BTreeMap<String, Kind> {
    m.and_then(|m| m.filter_metadata.get("remora"))
        .map(|s| {
            s.fields
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.kind.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_resource_carries_its_type_url() {
    let r = translate(&store(), &[], "default", "cluster.local");
    for t in ResourceType::PUSH_ORDER {
        assert!(!r.get(t).is_empty());
        for any in r.get(t).values() {
            assert_eq!(any.type_url, t.type_url());
        }
    }
}

#[test]
fn one_eds_cluster_per_service_port() {
    let r = translate(&store(), &[], "default", "cluster.local");
    assert_eq!(
        r.clusters.keys().collect::<Vec<_>>(),
        [
            "outbound|8080||payments.shop.svc.cluster.local",
            "outbound|80||orders-v1.default.svc.cluster.local",
            "outbound|80||orders-v2.default.svc.cluster.local",
            "outbound|80||orders.default.svc.cluster.local",
            "outbound|9090||orders.default.svc.cluster.local",
        ]
    );
    let name = "outbound|80||orders.default.svc.cluster.local";
    let c: Cluster = decode(&r.clusters, name);
    assert_eq!(c.name, name);
    assert_eq!(
        c.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
    );
    let eds = c.eds_cluster_config.as_ref().unwrap();
    assert_eq!(eds.service_name, name);
    let source = eds.eds_config.as_ref().unwrap();
    assert_eq!(source.resource_api_version, ApiVersion::V3 as i32);
    assert!(matches!(
        source.config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(
        c.connect_timeout.as_ref().map(|d| (d.seconds, d.nanos)),
        Some((1, 0))
    );
    assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32);
    let Some(LbConfig::LeastRequestLbConfig(lr)) = &c.lb_config else {
        panic!("no least-request config: {:?}", c.lb_config);
    };
    assert_eq!(lr.choice_count.as_ref().map(|v| v.value), Some(2));
    // The list gRPC reads: Remora's peak-EWMA first, round robin last.
    let types: Vec<String> = c
        .load_balancing_policy
        .as_ref()
        .unwrap()
        .policies
        .iter()
        .map(|p| {
            let config = p.typed_extension_config.as_ref().unwrap();
            config.typed_config.as_ref().unwrap().type_url.clone()
        })
        .collect();
    assert_eq!(
        types.first().map(String::as_str),
        Some(remora_proto::type_url::PEAK_EWMA)
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin")
    );
    assert_eq!(
        remora_fields(c.metadata.as_ref()),
        [
            ("balancer".to_owned(), Kind::StringValue("peak-ewma".into())),
            ("namespace".to_owned(), Kind::StringValue("default".into())),
            ("port".to_owned(), Kind::NumberValue(80.0)),
            ("service".to_owned(), Kind::StringValue("orders".into())),
        ]
        .into()
    );
}

fn upstream_protocol(c: &Cluster) -> ProtocolConfig {
    let any = &c.typed_extension_protocol_options
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let options: HttpProtocolOptions = unpack(any);
    match options.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => e.protocol_config.unwrap(),
        other => panic!("not explicit: {other:?}"),
    }
}

#[test]
fn app_protocol_picks_http1_or_http2_upstream() {
    let r = translate(&store(), &[], "default", "cluster.local");
    let http: Cluster = decode(&r.clusters, "outbound|80||orders.default.svc.cluster.local");
    let grpc: Cluster = decode(
        &r.clusters,
        "outbound|9090||orders.default.svc.cluster.local",
    );
    let h2c: Cluster = decode(
        &r.clusters,
        "outbound|80||orders-v2.default.svc.cluster.local",
    );
    assert!(matches!(
        upstream_protocol(&http),
        ProtocolConfig::HttpProtocolOptions(_)
    ));
    assert!(matches!(
        upstream_protocol(&grpc),
        ProtocolConfig::Http2ProtocolOptions(_)
    ));
    assert!(matches!(
        upstream_protocol(&h2c),
        ProtocolConfig::Http2ProtocolOptions(_)
    ));
}

/// (address, meshed, node_id) of each endpoint, checking the fixed fields.
fn endpoints_of(cla: &ClusterLoadAssignment) -> Vec<(String, bool, Option<String>)> {
    let mut out = Vec::new();
    for locality in &cla.endpoints {
        assert!(locality.locality.is_some(), "gRPC needs a locality");
        assert_eq!(
            locality.load_balancing_weight.as_ref().map(|w| w.value),
            Some(1)
        );
        for lb in &locality.lb_endpoints {
            assert_eq!(lb.health_status, HealthStatus::Healthy as i32);
            assert_eq!(lb.load_balancing_weight.as_ref().map(|w| w.value), Some(1));
            let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &lb.host_identifier else {
                panic!("no endpoint");
            };
            let Some(address::Address::SocketAddress(s)) =
                e.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                panic!("no socket address");
            };
            let Some(PortSpecifier::PortValue(port)) = s.port_specifier else {
                panic!("no port");
            };
            let fields = remora_fields(lb.metadata.as_ref());
            let meshed = matches!(fields.get("meshed"), Some(Kind::BoolValue(true)));
            let node_id = match fields.get("node_id") {
                Some(Kind::StringValue(id)) => Some(id.clone()),
                _ => None,
            };
            out.push((format!("{}:{port}", s.address), meshed, node_id));
        }
    }
    out
}

#[test]
fn endpoints_are_connected_proxies_and_static_endpoints() {
    let meshed = [
        mesh_endpoint("orders-v2", "127.0.0.1:7102", "v2-b"),
        mesh_endpoint("orders-v2", "127.0.0.1:7101", "v2-a"),
        // Same address as a static endpoint: the proxy wins.
        mesh_endpoint("orders-v2", "10.0.0.5:7002", "v2-c"),
        mesh_endpoint("orders", "127.0.0.1:7200", "orders-a"),
    ];
    let r = translate(&store(), &meshed, "default", "cluster.local");
    let cla: ClusterLoadAssignment = decode(
        &r.endpoints,
        "outbound|80||orders-v2.default.svc.cluster.local",
    );
    assert_eq!(
        cla.cluster_name,
        "outbound|80||orders-v2.default.svc.cluster.local"
    );
    assert_eq!(
        endpoints_of(&cla),
        [
            ("10.0.0.5:7002".to_owned(), true, Some("v2-c".to_owned())),
            ("127.0.0.1:7101".to_owned(), true, Some("v2-a".to_owned())),
            ("127.0.0.1:7102".to_owned(), true, Some("v2-b".to_owned())),
            ("127.0.0.1:9002".to_owned(), false, Some(String::new())),
        ]
    );
    // A proxy serves every port of its Service.
    for port in [80, 9090] {
        let name = format!("outbound|{port}||orders.default.svc.cluster.local");
        let cla: ClusterLoadAssignment = decode(&r.endpoints, &name);
        assert_eq!(
            endpoints_of(&cla),
            [(
                "127.0.0.1:7200".to_owned(),
                true,
                Some("orders-a".to_owned())
            )]
        );
    }
}

#[test]
fn endpoints_the_service_does_not_admit_are_left_out() {
    let mut wrong_identity = mesh_endpoint("orders", "127.0.0.1:7200", "impostor");
    wrong_identity.identity = Some("spiffe://cluster.local/ns/default/sa/web".into());
    let mut anonymous = mesh_endpoint("orders", "127.0.0.1:7201", "anonymous");
    anonymous.identity = None;
    let mut elsewhere = mesh_endpoint("orders", "127.0.0.1:1", "far-away");
    elsewhere.peer = Some("10.9.9.9:40000".parse().unwrap());
    let admitted = mesh_endpoint("orders", "127.0.0.1:7203", "orders-a");
    let meshed = [wrong_identity, anonymous, elsewhere, admitted];
    let r = translate(&store(), &meshed, "default", "cluster.local");
    let cla: ClusterLoadAssignment = decode(
        &r.endpoints,
        "outbound|80||orders.default.svc.cluster.local",
    );
    assert_eq!(
        endpoints_of(&cla),
        [(
            "127.0.0.1:7203".to_owned(),
            true,
            Some("orders-a".to_owned())
        )]
    );
}

#[test]
fn endpoints_the_cluster_vouches_for_are_kept_whatever_the_annotations_say() {
    // A selected pod with its own account (not the one named like the
    // Service), no xDS peer: the cluster's facts are its authority.
    let pod = MeshEndpoint {
        service: ObjectKey::new("default", "orders"),
        address: "10.1.0.7:7002".parse().unwrap(),
        node_id: "pod/default/orders-canary-0".into(),
        identity: Some("spiffe://cluster.local/ns/default/sa/orders-canary".into()),
        peer: None,
        origin: crate::translate::Origin::Cluster,
    };
    // The same facts claimed by a proxy about itself are refused.
    let claimed = MeshEndpoint {
        address: "10.1.0.8:7002".parse().unwrap(),
        node_id: "claims-the-same".into(),
        origin: crate::translate::Origin::Registered,
        ..pod.clone()
    };
    let r = translate(&store(), &[pod, claimed], "default", "cluster.local");
    let cla: ClusterLoadAssignment = decode(
        &r.endpoints,
        "outbound|80||orders.default.svc.cluster.local",
    );
    assert_eq!(
        endpoints_of(&cla),
        [(
            "10.1.0.7:7002".to_owned(),
            true,
            Some("pod/default/orders-canary-0".to_owned())
        )]
    );
}

#[test]
fn a_service_without_endpoints_has_an_empty_assignment() {
    let r = translate(&store(), &[], "default", "cluster.local");
    let cla: ClusterLoadAssignment = decode(
        &r.endpoints,
        "outbound|80||orders-v1.default.svc.cluster.local",
    );
    assert!(cla.endpoints.is_empty());
}

/// The HTTP connection manager in `any`, checked to take `routes` over RDS and
/// to end with the router.
fn hcm_of(any: &Any, routes: &str) -> HttpConnectionManager {
    let hcm: HttpConnectionManager = unpack(any);
    let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
        panic!("not RDS");
    };
    assert_eq!(rds.route_config_name, routes);
    assert!(matches!(
        rds.config_source
            .as_ref()
            .and_then(|c| c.config_source_specifier.as_ref()),
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    let [router] = hcm.http_filters.as_slice() else {
        panic!("expected only the router filter");
    };
    assert_eq!(router.name, "envoy.filters.http.router");
    let Some(http_filter::ConfigType::TypedConfig(typed)) = &router.config_type else {
        panic!("the router needs a typed config (gRPC requires it)");
    };
    assert_eq!(typed.type_url, remora_proto::type_url::ROUTER);
    hcm
}

#[test]
fn the_outbound_listener_uses_rds_outbound() {
    let r = translate(&store(), &[], "default", "cluster.local");
    let l: Listener = decode(&r.listeners, "outbound");
    let [chain] = l.filter_chains.as_slice() else {
        panic!("expected one filter chain");
    };
    let [f] = chain.filters.as_slice() else {
        panic!("expected one filter");
    };
    assert_eq!(f.name, "envoy.filters.network.http_connection_manager");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no typed config");
    };
    hcm_of(any, "outbound");
}

#[test]
fn every_name_of_an_http_port_is_an_api_listener_for_grpc() {
    let r = translate(&store(), &[], "default", "cluster.local");
    // Every domain with a port.
    for name in [
        "orders.default.svc.cluster.local:80",
        "orders.default.svc:80",
        "orders.default:80",
        "orders:80",
        "orders.default.svc.cluster.local:9090",
        "orders:9090",
        "payments.shop.svc.cluster.local:8080",
    ] {
        let l: Listener = decode(&r.listeners, name);
        assert_eq!(l.name, name);
        let any = l.api_listener.and_then(|a| a.api_listener).unwrap();
        let routes = if name.ends_with("9090") {
            "orders.default.svc.cluster.local:9090"
        } else if name.starts_with("payments") {
            "payments.shop.svc.cluster.local:8080"
        } else {
            "orders.default.svc.cluster.local:80"
        };
        hcm_of(&any, routes);
    }
    for not_a_listener in [
        "orders",
        "orders.default.svc.cluster.local",
        "orders.default.svc.cluster.local:9091",
    ] {
        assert!(
            !r.listeners.contains_key(not_a_listener),
            "{not_a_listener}"
        );
    }
    // Seen from shop, orders has no short names.
    let shop = translate(&store(), &[], "shop", "cluster.local");
    assert!(!shop.listeners.contains_key("orders:80"));
    assert!(shop.listeners.contains_key("payments:8080"));
}

#[test]
fn grpc_clients_get_each_ports_virtual_host_in_a_route_configuration_of_its_own() {
    let r = translate(&store(), &[], "default", "cluster.local");
    let outbound: RouteConfiguration = decode(&r.routes, "outbound");
    let name = "orders.default.svc.cluster.local:80";
    let rc: RouteConfiguration = decode(&r.routes, name);
    assert_eq!(rc.name, name);
    let [host] = rc.virtual_hosts.as_slice() else {
        panic!("expected one virtual host: {rc:?}");
    };
    assert_eq!(host.name, "default/orders:80");
    // The split reaches gRPC as weighted clusters, like the proxies' routes.
    assert_eq!(
        describe(host),
        describe(vhost(&outbound, "default/orders:80"))
    );
    assert!(host.domains.contains(&name.to_owned()));
    assert!(host.domains.contains(&"orders:80".to_owned()));
    // Proxies still get one RouteConfiguration with every virtual host.
    assert_eq!(outbound.virtual_hosts.len(), 5);
}

fn vhost<'a>(rc: &'a RouteConfiguration, name: &str) -> &'a VirtualHost {
    rc.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

/// (path, headers, action) of each route, readable.
fn describe(v: &VirtualHost) -> Vec<String> {
    v.routes
        .iter()
        .map(|route| {
            let m = route.r#match.as_ref().unwrap();
            let path = match m.path_specifier.as_ref().unwrap() {
                PathSpecifier::Prefix(p) => format!("prefix {p}"),
                PathSpecifier::Path(p) => format!("exact {p}"),
                other => panic!("{other:?}"),
            };
            let headers: Vec<String> = m
                .headers
                .iter()
                .map(|h| match &h.header_match_specifier {
                    Some(HeaderMatchSpecifier::StringMatch(s)) => match &s.match_pattern {
                        Some(MatchPattern::Exact(v)) => format!(" {}={v}", h.name),
                        other => panic!("{other:?}"),
                    },
                    other => panic!("{other:?}"),
                })
                .collect();
            let Some(Action::Route(action)) = &route.action else {
                panic!("not a route action");
            };
            // outbound|80||orders.default.svc.cluster.local -> orders (port 80) or orders:9090
            let short = |c: &str| {
                let host = c
                    .split("||")
                    .nth(1)
                    .unwrap_or(c)
                    .replace(".default.svc.cluster.local", "");
                match c.split('|').nth(1) {
                    Some("80") | None => host,
                    Some(port) => format!("{host}:{port}"),
                }
            };
            let to = match action.cluster_specifier.as_ref().unwrap() {
                ClusterSpecifier::Cluster(c) => short(c),
                ClusterSpecifier::WeightedClusters(w) => w
                    .clusters
                    .iter()
                    .map(|c| format!("{}:{}", short(&c.name), c.weight.as_ref().unwrap().value))
                    .collect::<Vec<_>>()
                    .join(","),
                other => panic!("{other:?}"),
            };
            format!("{path}{} -> {to}", headers.concat())
        })
        .collect()
}

#[test]
fn routes_follow_gateway_api_precedence() {
    let r = translate(&store(), &[], "default", "cluster.local");
    let rc: RouteConfiguration = decode(&r.routes, "outbound");
    assert_eq!(rc.name, "outbound");
    assert_eq!(
        describe(vhost(&rc, "default/orders:80")),
        [
            "exact /health -> orders-v1:0,orders-v2:3",
            "exact /api :method=POST x-canary=yes -> orders-v2",
            "prefix /api/ :method=POST x-canary=yes -> orders-v2",
            "prefix / -> orders-v1:90,orders-v2:10",
        ]
    );
}

#[test]
fn a_port_without_routes_goes_to_its_own_cluster() {
    let r = translate(&store(), &[], "default", "cluster.local");
    let rc: RouteConfiguration = decode(&r.routes, "outbound");
    assert_eq!(
        describe(vhost(&rc, "default/orders:9090")),
        ["prefix / -> orders:9090"]
    );
    assert_eq!(
        describe(vhost(&rc, "default/orders-v1:80")),
        ["prefix / -> orders-v1"]
    );
    assert_eq!(rc.virtual_hosts.len(), 5);
}

#[test]
fn consumer_routes_apply_only_to_their_namespace() {
    let r = translate(&store(), &[], "shop", "cluster.local");
    let rc: RouteConfiguration = decode(&r.routes, "outbound");
    let orders = vhost(&rc, "default/orders:80");
    assert_eq!(
        describe(orders),
        [
            "exact /health -> orders-v1:0,orders-v2:3",
            // A longer prefix beats a method and header match.
            "exact /shop -> orders-v1",
            "prefix /shop/ -> orders-v1",
            "exact /api :method=POST x-canary=yes -> orders-v2",
            "prefix /api/ :method=POST x-canary=yes -> orders-v2",
            "prefix / -> orders-v1:90,orders-v2:10",
        ]
    );
    // The consumer route has no port: it also applies to 9090 there.
    assert_eq!(
        describe(vhost(&rc, "default/orders:9090")),
        ["exact /shop -> orders-v1", "prefix /shop/ -> orders-v1"]
    );
    // Seen from shop, `orders` is not a short name but `payments` is.
    assert!(!orders.domains.contains(&"orders".to_owned()));
    assert!(vhost(&rc, "shop/payments:8080")
        .domains
        .contains(&"payments".to_owned()));
}

#[test]
fn domains_include_short_names_in_the_same_namespace() {
    let r = translate(&store(), &[], "default", "cluster.local");
    let rc: RouteConfiguration = decode(&r.routes, "outbound");
    let domains = &vhost(&rc, "default/orders:80").domains;
    for d in [
        "orders",
        "orders:80",
        "orders.default",
        "orders.default.svc.cluster.local:80",
    ] {
        assert!(
            domains.contains(&d.to_owned()),
            "{d} missing from {domains:?}"
        );
    }
    let grpc = &vhost(&rc, "default/orders:9090").domains;
    assert!(grpc.contains(&"orders:9090".to_owned()));
    assert!(
        !grpc.contains(&"orders".to_owned()),
        "bare names belong to the first port"
    );
}

#[test]
fn translation_is_deterministic() {
    let meshed = [
        mesh_endpoint("orders-v2", "127.0.0.1:7101", "a"),
        mesh_endpoint("orders", "127.0.0.1:7102", "b"),
    ];
    let first = translate(&store(), &meshed, "default", "cluster.local");
    for _ in 0..10 {
        assert_eq!(
            translate(&store(), &meshed, "default", "cluster.local"),
            first
        );
    }
}
