//! Target ports: each Cluster names the app port behind its Service port, and
//! the inbound listener keys the opaque chains by those app ports and lists
//! the HTTP ones a peer may ask for.

use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::listener::v3::{filter, FilterChain, Listener};
use remora_proto::xds::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};
use remora_proto::xds::google::protobuf::value::Kind;
use remora_proto::xds::google::protobuf::{ListValue, UInt32Value, Value};

use super::tests::{decode, remora_fields};
use super::translate;
use crate::source::parse;
use crate::store::Store;
use crate::validate::validate;

/// Two HTTP ports to one app port, one with its own, one without; two opaque
/// ports to one app port and one without a target.
const ORDERS: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  ports:
  - {name: api, port: 80, targetPort: 8080}
  - {name: api-too, port: 82, targetPort: 8080}
  - {name: admin, port: 9090, targetPort: 9090}
  - {name: legacy, port: 81}
  - {name: redis, port: 6379, targetPort: 16379, appProtocol: redis}
  - {name: redis-alias, port: 6380, targetPort: 16379, appProtocol: tcp}
  - {name: kafka, port: 9092, appProtocol: kafka}
";

fn store(text: &str) -> Store {
    let outcome = validate(&parse("orders.yaml", text).documents);
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    outcome.store
}

fn inbound(text: &str) -> Listener {
    let r = translate(&store(text), &[], "shop", "cluster.local");
    decode(&r.listeners, "inbound|orders.shop.svc.cluster.local")
}

fn chain<'a>(l: &'a Listener, name: &str) -> &'a FilterChain {
    l.filter_chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no filter chain {name}"))
}

fn number(n: u16) -> Kind {
    Kind::NumberValue(n.into())
}

#[test]
fn each_cluster_names_its_target_port_when_it_has_one() {
    let r = translate(&store(ORDERS), &[], "shop", "cluster.local");
    let target = |port: u16| {
        let name = format!("outbound|{port}||orders.shop.svc.cluster.local");
        let c: Cluster = decode(&r.clusters, &name);
        remora_fields(c.metadata.as_ref()).remove("target_port")
    };
    assert_eq!(target(80), Some(number(8080)));
    assert_eq!(target(82), Some(number(8080)));
    assert_eq!(
        target(81),
        None,
        "no targetPort in a file: none on the wire"
    );
    assert_eq!(target(6379), Some(number(16379)));
    assert_eq!(target(9092), None);
}

#[test]
fn opaque_chains_are_keyed_by_the_app_port_one_per_app_port() {
    let l = inbound(ORDERS);
    let names: Vec<&str> = l.filter_chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["mtls", "tcp|9092", "tcp|16379"]);
    let redis = chain(&l, "tcp|16379");
    let m = redis.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.destination_port, Some(UInt32Value { value: 16379 }));
    let fields = remora_fields(redis.metadata.as_ref());
    assert_eq!(fields["port"], number(16379));
    assert_eq!(
        fields["protocol"],
        Kind::StringValue("redis".into()),
        "the lower Service port's protocol"
    );
    let Some(filter::ConfigType::TypedConfig(any)) = &redis.filters[0].config_type else {
        panic!("no typed config");
    };
    let proxy = <TcpProxy as prost::Message>::decode(any.value.as_slice()).unwrap();
    assert_eq!(proxy.stat_prefix, "inbound|16379|");
    assert_eq!(
        proxy.cluster_specifier,
        Some(ClusterSpecifier::Cluster("inbound|16379|".into()))
    );
    let kafka = chain(&l, "tcp|9092").filter_chain_match.as_ref().unwrap();
    assert_eq!(
        kafka.destination_port,
        Some(UInt32Value { value: 9092 }),
        "without a target: the Service port, as before"
    );
}

#[test]
fn the_http_chains_list_the_http_target_ports_sorted_once_each() {
    let l = inbound(ORDERS);
    let listed = |chain: &FilterChain| remora_fields(chain.metadata.as_ref()).remove("http_ports");
    let ports = |ns: &[u16]| {
        Kind::ListValue(ListValue {
            values: ns
                .iter()
                .map(|n| Value {
                    kind: Some(number(*n)),
                })
                .collect(),
        })
    };
    assert_eq!(listed(chain(&l, "mtls")), Some(ports(&[8080, 9090])));

    let permissive = format!(
        "{ORDERS}---
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {{name: orders, namespace: shop}}
spec: {{targetRef: {{kind: Service, name: orders}}, mode: PERMISSIVE}}
"
    );
    let l = inbound(&permissive);
    assert_eq!(listed(chain(&l, "plaintext")), Some(ports(&[8080, 9090])));

    let without = "
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  ports: [{port: 80}, {port: 6379, targetPort: 16379, appProtocol: redis}]
";
    let l = inbound(without);
    assert!(
        chain(&l, "mtls").metadata.is_none(),
        "no HTTP target: the HTTP chains as before"
    );
}
