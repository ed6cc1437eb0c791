//! The inbound listener: transports by filter chain, RBAC into authorization, and a
//! NACK naming the field for what is not supported.

use std::collections::HashMap;

use remora_proto::prost::{Message, Name};
use remora_proto::xds::envoy::config::core::v3::{transport_socket, Metadata, TransportSocket};
use remora_proto::xds::envoy::config::listener::v3::{
    filter, Filter, FilterChain, FilterChainMatch, Listener,
};
use remora_proto::xds::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission, Policy, Principal, Rbac,
};
use remora_proto::xds::envoy::config::route::v3::RouteConfiguration;
use remora_proto::xds::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use remora_proto::xds::envoy::extensions::filters::http::router::v3::Router;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter,
};
use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use remora_proto::xds::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use remora_proto::xds::google::protobuf::{value::Kind, Any, BoolValue, ListValue, Struct, Value};

use super::inbound;
use crate::snapshot::InboundPolicy;
use crate::upstream::EndpointRegistry;

fn compile(l: &Listener) -> Result<InboundPolicy, super::CompileError> {
    inbound::compile(l, &EndpointRegistry::default())
}

const NAME: &str = "inbound|orders.shop.svc.cluster.local";

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn rbac(action: Action, principal: Principal) -> HttpFilter {
    let policy = Policy {
        permissions: vec![Permission {
            rule: Some(permission::Rule::Any(true)),
        }],
        principals: vec![principal],
        ..Default::default()
    };
    HttpFilter {
        name: "envoy.filters.http.rbac".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&RbacFilter {
            rules: Some(Rbac {
                action: action as i32,
                policies: HashMap::from([("shop/p/rules[0]".to_owned(), policy)]),
                ..Default::default()
            }),
            ..Default::default()
        }))),
        ..Default::default()
    }
}

fn web() -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(MatchPattern::Exact(
                        "spiffe://cluster.local/ns/shop/sa/web".into(),
                    )),
                    ignore_case: false,
                }),
            },
        )),
    }
}

fn chain(protocol: &str, tls: Option<bool>, mut filters: Vec<HttpFilter>) -> FilterChain {
    filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..Default::default()
    });
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::RouteConfig(RouteConfiguration::default())),
        http_filters: filters,
        ..Default::default()
    };
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: protocol.into(),
            ..Default::default()
        }),
        transport_socket: tls.map(|required| TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(
                &DownstreamTlsContext {
                    require_client_certificate: Some(BoolValue { value: required }),
                    ..Default::default()
                },
            ))),
        }),
        filters: vec![Filter {
            name: "envoy.filters.network.http_connection_manager".into(),
            config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
        }],
        ..Default::default()
    }
}

fn listener(chains: Vec<FilterChain>) -> Listener {
    Listener {
        name: NAME.into(),
        filter_chains: chains,
        ..Default::default()
    }
}

#[test]
fn strict_has_only_the_mtls_chain() {
    let p = compile(&listener(vec![chain("tls", Some(true), vec![])])).unwrap();
    assert_eq!(p.mode(), "STRICT");
    assert!(p.mtls.is_empty());
}

#[test]
fn permissive_adds_a_plaintext_chain_with_its_own_rules() {
    let p = compile(&listener(vec![
        chain(
            "tls",
            Some(true),
            vec![rbac(Action::Deny, web()), rbac(Action::Allow, web())],
        ),
        chain("raw_buffer", None, vec![]),
    ]))
    .unwrap();
    assert_eq!(p.mode(), "PERMISSIVE");
    assert_eq!(p.mtls.deny.len(), 1);
    assert_eq!(&*p.mtls.deny[0].name, "shop/p/rules[0]");
    assert_eq!(p.mtls.allow.as_ref().map(Vec::len), Some(1));
    assert!(p.plaintext.unwrap().is_empty());
}

#[test]
fn mesh_tls_must_require_client_certificates() {
    let e = compile(&listener(vec![chain("tls", Some(false), vec![])])).unwrap_err();
    assert_eq!(
        e.field,
        "filter_chains[0].transport_socket.typed_config.require_client_certificate"
    );
}

#[test]
fn a_plaintext_only_listener_is_refused() {
    let e = compile(&listener(vec![chain("raw_buffer", None, vec![])])).unwrap_err();
    assert_eq!(e.field, "filter_chains");
    assert!(e.message.contains("no mTLS filter chain"), "{e}");
}

#[test]
fn unsupported_principals_are_named() {
    let by_ip = Principal {
        identifier: Some(principal::Identifier::RemoteIp(Default::default())),
    };
    let e = compile(&listener(vec![chain(
        "tls",
        Some(true),
        vec![rbac(Action::Allow, by_ip)],
    )]))
    .unwrap_err();
    assert_eq!(e.kind, "Listener");
    assert_eq!(e.name, NAME);
    assert_eq!(
        e.field,
        "filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules.policies[shop/p/rules[0]].principals[0]"
    );
}

#[test]
fn the_router_must_come_last() {
    let mut c = chain("tls", Some(true), vec![]);
    let Some(filter::ConfigType::TypedConfig(hcm)) = &c.filters[0].config_type else {
        unreachable!()
    };
    let mut hcm = HttpConnectionManager::decode(hcm.value.as_slice()).unwrap();
    hcm.http_filters.push(rbac(Action::Deny, web()));
    c.filters[0].config_type = Some(filter::ConfigType::TypedConfig(any(&hcm)));
    let e = compile(&listener(vec![c])).unwrap_err();
    assert!(e.field.ends_with("http_filters[0]"), "{e}");
}

/// `metadata.remora.http_ports` holding `ports`.
fn http_ports(ports: &[Kind]) -> Metadata {
    let list = Value {
        kind: Some(Kind::ListValue(ListValue {
            values: ports
                .iter()
                .map(|p| Value {
                    kind: Some(p.clone()),
                })
                .collect(),
        })),
    };
    Metadata {
        filter_metadata: HashMap::from([(
            "remora".to_owned(),
            Struct {
                fields: HashMap::from([("http_ports".to_owned(), list)]),
            },
        )]),
        ..Default::default()
    }
}

#[test]
fn the_http_target_ports_are_kept_and_a_bad_one_is_named() {
    let p = compile(&listener(vec![chain("tls", Some(true), vec![])])).unwrap();
    assert!(p.http_ports.is_empty(), "none listed: every request to app");

    let mut listed = chain("tls", Some(true), vec![]);
    listed.metadata = Some(http_ports(&[
        Kind::NumberValue(8080.0),
        Kind::NumberValue(9090.0),
    ]));
    let p = compile(&listener(vec![listed.clone()])).unwrap();
    assert_eq!(p.http_ports.into_iter().collect::<Vec<_>>(), [8080, 9090]);

    listed.metadata = Some(http_ports(&[
        Kind::NumberValue(8080.0),
        Kind::StringValue("admin".into()),
    ]));
    let e = compile(&listener(vec![listed])).unwrap_err();
    assert_eq!(e.kind, "Listener");
    assert_eq!(
        e.field,
        "filter_chains[0].metadata.filter_metadata.remora.http_ports[1]"
    );
    assert_eq!(e.message, "is not a port (a whole number from 1 to 65535)");
}
