//! Opaque TCP ports and cluster IPs as translated for callers: clusters marked
//! `tcp` without HTTP options, no virtual host or API listener, and the outbound
//! listener's chains after the HTTP one, picked by original destination.

use std::collections::BTreeMap;

use prost::Message;
use remora_proto::xds::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::core::v3::{CidrRange, Metadata};
use remora_proto::xds::envoy::config::listener::v3::{filter, FilterChain, Listener};
use remora_proto::xds::envoy::config::route::v3::RouteConfiguration;
use remora_proto::xds::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};
use remora_proto::xds::google::protobuf::{value::Kind, UInt32Value};

use super::*;
use crate::source::parse;
use crate::validate::validate;

/// `api` has neither an opaque port nor a cluster IP: it gets no chain of its own.
const CONFIG: &str = "
apiVersion: v1
kind: Service
metadata: {name: redis}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: redis, port: 6379, appProtocol: redis}]
---
apiVersion: v1
kind: Service
metadata: {name: queue}
spec:
  ports: [{port: 5672, appProtocol: amqp}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 'fd00::20'
  ports: [{port: 9000, appProtocol: tcp}, {port: 80}, {port: 8080, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  ports: [{port: 80}]
";

fn resources() -> Resources {
    let outcome = validate(&parse("config.yaml", CONFIG).documents);
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    translate(&outcome.store, &[], "default", "cluster.local")
}

fn decode<M: Message + Default>(map: &ResourceMap, name: &str) -> M {
    let any = map
        .get(name)
        .unwrap_or_else(|| panic!("no {name}; have {:?}", map.keys().collect::<Vec<_>>()));
    M::decode(any.value.as_slice()).unwrap()
}

fn remora_fields(m: Option<&Metadata>) -> BTreeMap<String, Kind> {
    m.and_then(|m| m.filter_metadata.get("remora"))
        .map(|s| {
            s.fields
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.kind.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn text(s: &str) -> Kind {
    Kind::StringValue(s.to_owned())
}

fn outbound() -> Listener {
    decode(&resources().listeners, "outbound")
}

fn chain<'a>(l: &'a Listener, name: &str) -> &'a FilterChain {
    l.filter_chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no filter chain {name}"))
}

fn tcp_proxy(chain: &FilterChain) -> TcpProxy {
    let [f] = chain.filters.as_slice() else {
        panic!("expected only the TCP proxy: {:?}", chain.filters);
    };
    assert_eq!(f.name, "envoy.filters.network.tcp_proxy");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no typed config");
    };
    assert_eq!(any.type_url, remora_proto::type_url::TCP_PROXY);
    TcpProxy::decode(any.value.as_slice()).unwrap()
}

fn single_address(address: &str, len: u32) -> Vec<CidrRange> {
    vec![CidrRange {
        address_prefix: address.to_owned(),
        prefix_len: Some(UInt32Value { value: len }),
    }]
}

#[test]
fn an_opaque_port_gets_an_eds_cluster_marked_tcp_without_http_options() {
    let r = resources();
    let c: Cluster = decode(
        &r.clusters,
        "outbound|6379||redis.default.svc.cluster.local",
    );
    assert_eq!(
        c.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
    );
    assert_eq!(
        c.eds_cluster_config.unwrap().service_name,
        "outbound|6379||redis.default.svc.cluster.local"
    );
    assert_eq!(c.connect_timeout.map(|d| d.seconds), Some(1));
    assert!(c.typed_extension_protocol_options.is_empty());
    assert_eq!(
        remora_fields(c.metadata.as_ref()),
        [
            ("balancer".to_owned(), text("peak-ewma")),
            ("namespace".to_owned(), text("default")),
            ("port".to_owned(), Kind::NumberValue(6379.0)),
            ("protocol".to_owned(), text("tcp")),
            ("service".to_owned(), text("redis")),
        ]
        .into()
    );
    let http: Cluster = decode(&r.clusters, "outbound|80||web.default.svc.cluster.local");
    assert!(!remora_fields(http.metadata.as_ref()).contains_key("protocol"));
    assert_eq!(http.typed_extension_protocol_options.len(), 1);
}

#[test]
fn an_opaque_port_has_no_virtual_host_and_no_api_listener() {
    let r = resources();
    let rc: RouteConfiguration = decode(&r.routes, "outbound");
    let vhosts: Vec<_> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        vhosts,
        ["default/api:80", "default/web:80", "default/web:8080"]
    );
    for opaque in [
        "redis.default.svc.cluster.local:6379",
        "queue.default.svc.cluster.local:5672",
        "web.default.svc.cluster.local:9000",
    ] {
        assert!(!r.listeners.contains_key(opaque), "{opaque}");
    }
    assert!(r
        .listeners
        .contains_key("web.default.svc.cluster.local:8080"));
    // The port-less names go to the first HTTP port, not to the opaque 9000.
    let web = &rc.virtual_hosts[1];
    assert!(web.domains.contains(&"web".to_owned()), "{:?}", web.domains);
}

#[test]
fn the_outbound_listener_keeps_http_first_then_one_chain_per_destination() {
    let l = outbound();
    let names: Vec<_> = l.filter_chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "",
            "tcp|5672||queue.default.svc.cluster.local",
            "tcp|6379||redis.default.svc.cluster.local",
            "http|80||web.default.svc.cluster.local",
            "http|8080||web.default.svc.cluster.local",
            "tcp|9000||web.default.svc.cluster.local",
        ]
    );
    let first = &l.filter_chains[0];
    assert!(first.filter_chain_match.is_none() && first.metadata.is_none());
    assert_eq!(
        first.filters[0].name,
        "envoy.filters.network.http_connection_manager"
    );
}

#[test]
fn an_opaque_chain_matches_port_and_cluster_ip_and_proxies_to_the_cluster() {
    let l = outbound();
    let redis = chain(&l, "tcp|6379||redis.default.svc.cluster.local");
    let m = redis.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.destination_port, Some(UInt32Value { value: 6379 }));
    assert_eq!(m.prefix_ranges, single_address("10.96.0.10", 32));
    let proxy = tcp_proxy(redis);
    let cluster = "outbound|6379||redis.default.svc.cluster.local";
    assert_eq!(proxy.stat_prefix, cluster);
    assert_eq!(
        proxy.cluster_specifier,
        Some(ClusterSpecifier::Cluster(cluster.to_owned()))
    );
    assert_eq!(proxy.idle_timeout.map(|d| d.seconds), Some(3600));
    assert_eq!(
        remora_fields(redis.metadata.as_ref()),
        [
            ("namespace".to_owned(), text("default")),
            ("port".to_owned(), Kind::NumberValue(6379.0)),
            ("protocol".to_owned(), text("redis")),
            ("service".to_owned(), text("redis")),
        ]
        .into()
    );

    // Without a cluster IP only the port is matched.
    let queue = chain(&l, "tcp|5672||queue.default.svc.cluster.local");
    assert!(queue
        .filter_chain_match
        .as_ref()
        .unwrap()
        .prefix_ranges
        .is_empty());
    assert_eq!(
        remora_fields(queue.metadata.as_ref()).get("protocol"),
        Some(&text("amqp"))
    );
    // An IPv6 cluster IP is one /128.
    let web = chain(&l, "tcp|9000||web.default.svc.cluster.local");
    let m = web.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.prefix_ranges, single_address("fd00::20", 128));
}

#[test]
fn an_http_port_at_a_cluster_ip_gets_the_http_filter_and_its_authority() {
    let r = resources();
    let l: Listener = decode(&r.listeners, "outbound");
    let web = chain(&l, "http|80||web.default.svc.cluster.local");
    let m = web.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.destination_port, Some(UInt32Value { value: 80 }));
    assert_eq!(m.prefix_ranges, single_address("fd00::20", 128));
    assert_eq!(
        web.filters, l.filter_chains[0].filters,
        "the same HTTP filter"
    );
    let authority = "web.default.svc.cluster.local:80";
    assert_eq!(
        remora_fields(web.metadata.as_ref()),
        [
            ("authority".to_owned(), text(authority)),
            ("namespace".to_owned(), text("default")),
            ("port".to_owned(), Kind::NumberValue(80.0)),
            ("protocol".to_owned(), text("http")),
            ("service".to_owned(), text("web")),
        ]
        .into()
    );
    // The authority reaches the port's virtual host.
    let rc: RouteConfiguration = decode(&r.routes, "outbound");
    let vhost = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == "default/web:80")
        .unwrap();
    assert!(vhost.domains.contains(&authority.to_owned()));

    let grpc = chain(&l, "http|8080||web.default.svc.cluster.local");
    assert_eq!(
        remora_fields(grpc.metadata.as_ref()).get("protocol"),
        Some(&text("grpc"))
    );
}

#[test]
fn chains_with_metadata_encode_the_same_every_time() {
    let first = resources();
    for _ in 0..10 {
        assert_eq!(resources(), first);
    }
}
