//! Opaque TCP ports on the Service's inbound listener: chains picked by port and
//! ALPN (and a plaintext twin when PERMISSIVE), and AuthorizationPolicies as
//! network RBAC with Istio's semantics for TCP.

use prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::core::v3::transport_socket;
use remora_proto::xds::envoy::config::listener::v3::{filter, FilterChain, Listener};
use remora_proto::xds::envoy::config::rbac::v3::{permission, principal, rbac::Action, Rbac};
use remora_proto::xds::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbacFilter;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpConnectionManager,
};
use remora_proto::xds::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbacFilter;
use remora_proto::xds::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};
use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use remora_proto::xds::google::protobuf::{value::Kind, UInt32Value};

use super::translate;
use crate::source::{parse, Loaded};
use crate::store::Store;
use crate::validate::validate_loaded;

/// `cache` serves redis and HTTP; `cache-admin` routes part of its HTTP.
const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 6379, appProtocol: redis}, {port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cache-admin, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: cache, port: 80}]
  rules: [{matches: [{path: {value: /admin}}], backendRefs: [{name: cache, port: 80}]}]
";

fn store(policies: &str) -> Store {
    let mut loaded = Loaded::default();
    for (file, text) in [("a.yaml", SERVICES), ("b.yaml", policies)] {
        loaded.documents.extend(parse(file, text).documents);
    }
    let outcome = validate_loaded(&loaded);
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    outcome.store
}

fn inbound(policies: &str) -> Listener {
    let r = translate(&store(policies), &[], "shop", "cluster.local");
    let any = &r.listeners["inbound|cache.shop.svc.cluster.local"];
    Listener::decode(any.value.as_slice()).unwrap()
}

fn chain<'a>(l: &'a Listener, name: &str) -> &'a FilterChain {
    l.filter_chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no filter chain {name}"))
}

/// The chain's network RBAC rules in order, after checking the TCP proxy ends it.
fn network_rbac(chain: &FilterChain) -> Vec<Rbac> {
    let (last, rbac) = chain.filters.split_last().unwrap();
    assert_eq!(last.name, "envoy.filters.network.tcp_proxy");
    rbac.iter()
        .map(|f| {
            assert_eq!(f.name, "envoy.filters.network.rbac");
            let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                panic!("no typed config");
            };
            assert_eq!(any.type_url, type_url::NETWORK_RBAC);
            let config = NetworkRbacFilter::decode(any.value.as_slice()).unwrap();
            assert_eq!(config.stat_prefix, "inbound|6379|");
            config.rules.unwrap()
        })
        .collect()
}

/// The HTTP RBAC rules of the `mtls` chain.
fn http_rbac(l: &Listener) -> Vec<Rbac> {
    let Some(filter::ConfigType::TypedConfig(any)) = &chain(l, "mtls").filters[0].config_type
    else {
        panic!("no HCM");
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    hcm.http_filters
        .iter()
        .filter_map(|f| match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(a)) if a.type_url == type_url::RBAC => {
                HttpRbacFilter::decode(a.value.as_slice()).unwrap().rules
            }
            _ => None,
        })
        .collect()
}

fn permissive() -> &'static str {
    "
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: cache, namespace: shop}
spec: {targetRef: {kind: Service, name: cache}, mode: PERMISSIVE}
"
}

#[test]
fn an_opaque_port_gets_an_mtls_chain_picked_by_port_and_alpn() {
    let l = inbound("");
    let names: Vec<_> = l.filter_chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["mtls", "tcp|6379"]);
    let tcp = chain(&l, "tcp|6379");
    let m = tcp.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.destination_port, Some(UInt32Value { value: 6379 }));
    assert_eq!(m.transport_protocol, "tls");
    assert_eq!(m.application_protocols, ["remora-tcp/1"]);

    let socket = tcp.transport_socket.as_ref().unwrap();
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        panic!("no TLS context");
    };
    let tls = DownstreamTlsContext::decode(any.value.as_slice()).unwrap();
    assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
    let common = tls.common_tls_context.unwrap();
    assert_eq!(common.alpn_protocols, ["remora-tcp/1"]);
    assert!(common.tls_params.is_some());

    assert!(network_rbac(tcp).is_empty(), "no policy, no RBAC filter");
    let Some(filter::ConfigType::TypedConfig(any)) = &tcp.filters[0].config_type else {
        panic!("no typed config");
    };
    let proxy = TcpProxy::decode(any.value.as_slice()).unwrap();
    assert_eq!(proxy.stat_prefix, "inbound|6379|");
    assert_eq!(
        proxy.cluster_specifier,
        Some(ClusterSpecifier::Cluster("inbound|6379|".into()))
    );
    let remora = &tcp.metadata.as_ref().unwrap().filter_metadata["remora"].fields;
    assert_eq!(
        remora["protocol"].kind,
        Some(Kind::StringValue("redis".into()))
    );
    assert_eq!(remora["port"].kind, Some(Kind::NumberValue(6379.0)));
}

#[test]
fn permissive_adds_a_plaintext_twin_with_the_same_filters() {
    let l = inbound(permissive());
    let names: Vec<_> = l.filter_chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["mtls", "plaintext", "tcp|6379", "tcp|6379|plaintext"]
    );
    let (tls, plain) = (chain(&l, "tcp|6379"), chain(&l, "tcp|6379|plaintext"));
    let m = plain.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.destination_port, Some(UInt32Value { value: 6379 }));
    assert_eq!(m.transport_protocol, "raw_buffer");
    assert!(m.application_protocols.is_empty());
    assert!(plain.transport_socket.is_none());
    assert_eq!(plain.filters, tls.filters);
    assert_eq!(plain.metadata, tls.metadata);
}

#[test]
fn a_deny_rule_with_a_path_still_denies_tcp_by_caller() {
    let l = inbound(
        "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-ops, namespace: shop}
spec:
  targetRef: {kind: Service, name: cache}
  action: DENY
  rules: [{from: {namespaces: [ops]}, to: {paths: [/admin], methods: [POST]}}]
",
    );
    let rules = network_rbac(chain(&l, "tcp|6379"));
    let [deny] = rules.as_slice() else {
        panic!("expected one RBAC filter: {rules:?}");
    };
    assert_eq!(deny.action, Action::Deny as i32);
    let rule = &deny.policies["shop/no-ops/rules[0]"];
    let text = format!("{:?}", rule.permissions);
    assert!(
        !text.contains("/admin") && !text.contains("POST"),
        "HTTP attributes are dropped: {text}"
    );
    let Some(principal::Identifier::Authenticated(a)) = &rule.principals[0].identifier else {
        panic!("{rule:?}");
    };
    assert_eq!(
        format!("{:?}", a.principal_name.as_ref().unwrap().match_pattern),
        "Some(Prefix(\"spiffe://cluster.local/ns/ops/sa/\"))"
    );
    // HTTP keeps the whole rule.
    let http = format!("{:?}", http_rbac(&l));
    assert!(http.contains("/admin") && http.contains("POST"), "{http}");
}

#[test]
fn an_allow_rule_with_a_path_does_not_allow_tcp() {
    let policy = |rules: &str| {
        format!(
            "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: readers, namespace: shop}}
spec:
  targetRef: {{kind: Service, name: cache}}
  action: ALLOW
  rules: {rules}
"
        )
    };
    let l = inbound(&policy(
        "[{from: {namespaces: [web]}, to: {methods: [GET]}}, {from: {namespaces: [batch]}}]",
    ));
    let rules = network_rbac(chain(&l, "tcp|6379"));
    let [allow] = rules.as_slice() else {
        panic!("expected one RBAC filter: {rules:?}");
    };
    assert_eq!(allow.action, Action::Allow as i32);
    let names: Vec<_> = allow.policies.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["shop/readers/rules[1]"],
        "only the rule TCP can match"
    );
    assert_eq!(http_rbac(&l)[0].policies.len(), 2);

    // No rule left: the ALLOW policy still applies, so no connection is allowed.
    let l = inbound(&policy("[{to: {paths: ['/read/*']}}]"));
    let rules = network_rbac(chain(&l, "tcp|6379"));
    let [allow] = rules.as_slice() else {
        panic!("expected one RBAC filter: {rules:?}");
    };
    assert_eq!(allow.action, Action::Allow as i32);
    assert!(allow.policies.is_empty());
}

#[test]
fn a_policy_on_an_httproute_leaves_tcp_alone() {
    let l = inbound(
        "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: admins, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, name: cache-admin}
  action: ALLOW
  rules: [{from: {namespaces: [ops]}}]
---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, name: cache-admin}
  action: DENY
  rules: [{}]
",
    );
    assert_eq!(http_rbac(&l).len(), 2);
    assert!(network_rbac(chain(&l, "tcp|6379")).is_empty());
}

#[test]
fn the_plaintext_twin_enforces_the_same_rules() {
    let policies = format!(
        "{}---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: mesh-only, namespace: shop}}
spec:
  targetRef: {{kind: Service, name: cache}}
  action: ALLOW
  rules: [{{from: {{identities: ['*']}}}}]
",
        permissive()
    );
    let l = inbound(&policies);
    let tls = network_rbac(chain(&l, "tcp|6379"));
    assert_eq!(tls.len(), 1);
    assert_eq!(network_rbac(chain(&l, "tcp|6379|plaintext")), tls);
    let rule = &tls[0].policies["shop/mesh-only/rules[0]"];
    assert!(matches!(
        rule.permissions[0].rule,
        Some(permission::Rule::AndRules(_) | permission::Rule::Any(true))
    ));
}
