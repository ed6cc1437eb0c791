//! Service port -> Cluster (EDS over ADS; HTTP/1.1, HTTP/2 or opaque TCP), one
//! that Remora proxies and gRPC's xDS client both accept: the balancer is the
//! `load_balancing_policy` list (`lb_policy.rs`), each client taking the first
//! policy it knows, with the old `lb_policy` enum beside it for older proxies.

use std::collections::HashMap;

use remora_proto::xds::envoy::config::cluster::v3::circuit_breakers::{thresholds, Thresholds};
use remora_proto::xds::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbConfig, LbPolicy,
    LeastRequestLbConfig, RingHashLbConfig,
};
use remora_proto::xds::envoy::config::cluster::v3::CircuitBreakers;
use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CoreHttpProtocolOptions,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use remora_proto::xds::envoy::r#type::v3::Percent;
use remora_proto::xds::google::protobuf::{UInt32Value, UInt64Value};

use remora_proto::xds::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::{
    certificate_validation_context, common_tls_context::ValidationContextType,
    subject_alt_name_matcher, CertificateValidationContext, CommonTlsContext,
    SubjectAltNameMatcher, UpstreamTlsContext,
};
use remora_proto::xds::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};

use super::inbound::TLS_TRANSPORT_SOCKET;
use super::{encode, metadata, names};
use crate::resources::{LoadBalancer, OriginTls, Service, ServicePort, TrafficPolicy};

/// The window a retry budget counts requests and retries over.
const RETRY_BUDGET_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Connect timeout when no TrafficPolicy sets one.
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The key of `typed_extension_protocol_options` for upstream HTTP options.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// `policy`: the Service's TrafficPolicy, for the connect timeout, the retry
/// budget (without one the proxy applies its default budget), the limits and
/// outlier detection (without one, the default).
pub fn cluster(service: &Service, port: &ServicePort, policy: Option<&TrafficPolicy>) -> Cluster {
    let name = names::cluster(&service.key, port.port);
    let connect = policy
        .and_then(|p| p.timeouts.connect)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let budget = policy.and_then(|p| p.retry.as_ref()).and_then(|r| r.budget);
    let limits = policy.map(|p| p.limits).unwrap_or_default();
    let default_balancer = LoadBalancer::default();
    let balancer = policy.map_or(&default_balancer, |p| &p.load_balancer);
    Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(super::ads_config_source()),
            service_name: name.clone(),
        }),
        connect_timeout: Some(super::resilience::duration(connect)),
        circuit_breakers: (budget.is_some() || !limits.is_empty()).then(|| CircuitBreakers {
            thresholds: vec![Thresholds {
                retry_budget: budget.map(|b| thresholds::RetryBudget {
                    budget_percent: Some(Percent {
                        value: f64::from(b.percent),
                    }),
                    min_retry_concurrency: Some(UInt32Value {
                        value: b.min_per_second,
                    }),
                    budget_interval: Some(super::resilience::duration(RETRY_BUDGET_WINDOW)),
                }),
                max_connections: limits.max_connections.map(|value| UInt32Value { value }),
                max_pending_requests: limits
                    .max_pending_requests
                    .map(|value| UInt32Value { value }),
                max_requests: limits.max_requests.map(|value| UInt32Value { value }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        // On by default: see `resilience`.
        outlier_detection: Some(super::resilience::outlier_detection(policy)),
        load_balancing_policy: Some(super::lb_policy::load_balancing_policy(balancer)),
        lb_policy: lb_policy(balancer) as i32,
        lb_config: match balancer {
            LoadBalancer::PeakEwma | LoadBalancer::LeastRequest => {
                Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    choice_count: Some(UInt32Value { value: 2 }),
                    ..Default::default()
                }))
            }
            LoadBalancer::RoundRobin => None,
            LoadBalancer::ConsistentHash {
                minimum_ring_size, ..
            } => Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: minimum_ring_size.map(|n| UInt64Value { value: n.into() }),
                ..Default::default()
            })),
        },
        // An opaque port's connections carry no HTTP to set options for.
        typed_extension_protocol_options: if port.protocol.is_opaque() {
            HashMap::new()
        } else {
            HashMap::from([(
                HTTP_PROTOCOL_OPTIONS.to_owned(),
                encode::message(&protocol_options(
                    port,
                    policy.and_then(|p| p.timeouts.idle),
                )),
            )])
        },
        transport_socket: service.tls.as_ref().map(|tls| origin_tls(tls, port)),
        metadata: Some(cluster_metadata(service, port, balancer)),
        name,
        ..Default::default()
    }
}

/// `metadata.remora`: `{service, namespace, port, balancer}`;
/// `allow_unauthenticated_endpoints: true` only for a Service annotated so
/// (without it a Remora proxy sends nothing to a meshed endpoint that proves no
/// identity); `protocol: tcp` only for an opaque port (a proxy balances its
/// connections, not requests, and speaks no HTTP to it); `target_port` when
/// the port has one (a proxy names it to a meshed endpoint, whose proxy
/// serves every port of the Service, as the app port to reach).
fn cluster_metadata(
    service: &Service,
    port: &ServicePort,
    balancer: &LoadBalancer,
) -> remora_proto::xds::envoy::config::core::v3::Metadata {
    let mut m = metadata::remora([
        ("service", metadata::string(&service.key.name)),
        ("namespace", metadata::string(&service.key.namespace)),
        ("port", metadata::number(port.port.into())),
        ("balancer", metadata::string(balancer_name(balancer))),
    ]);
    if let Some(remora) = m.filter_metadata.get_mut(names::METADATA_KEY) {
        if service.authority.allow_unauthenticated {
            remora.fields.insert(
                ALLOW_UNAUTHENTICATED_ENDPOINTS.to_owned(),
                metadata::boolean(true),
            );
        }
        if port.protocol.is_opaque() {
            remora
                .fields
                .insert(PROTOCOL.to_owned(), metadata::string(TCP));
        }
        if let Some(target) = port.target_port {
            remora
                .fields
                .insert(TARGET_PORT.to_owned(), metadata::number(target.into()));
        }
    }
    m
}

/// The cluster metadata field a proxy reads before it sends in plaintext to a
/// meshed endpoint.
pub const ALLOW_UNAUTHENTICATED_ENDPOINTS: &str = "allow_unauthenticated_endpoints";
/// The cluster metadata field that marks an opaque TCP cluster, and its value.
pub const PROTOCOL: &str = "protocol";
pub const TCP: &str = "tcp";
/// The cluster metadata field naming the app port behind the Service port.
pub const TARGET_PORT: &str = "target_port";

fn lb_policy(balancer: &LoadBalancer) -> LbPolicy {
    match balancer {
        LoadBalancer::PeakEwma | LoadBalancer::LeastRequest => LbPolicy::LeastRequest,
        LoadBalancer::RoundRobin => LbPolicy::RoundRobin,
        LoadBalancer::ConsistentHash { .. } => LbPolicy::RingHash,
    }
}

/// `metadata.remora.balancer`: tells Remora proxies which LEAST_REQUEST cost.
fn balancer_name(balancer: &LoadBalancer) -> &'static str {
    match balancer {
        LoadBalancer::PeakEwma => "peak-ewma",
        LoadBalancer::LeastRequest => "least-request",
        LoadBalancer::RoundRobin => "round-robin",
        LoadBalancer::ConsistentHash { .. } => "ring-hash",
    }
}

fn protocol_options(port: &ServicePort, idle: Option<std::time::Duration>) -> HttpProtocolOptions {
    let protocol = if port.protocol.is_http2() {
        ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())
    } else {
        ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
    };
    HttpProtocolOptions {
        common_http_protocol_options: idle.map(|d| CoreHttpProtocolOptions {
            idle_timeout: Some(super::resilience::duration(d)),
            ..Default::default()
        }),
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(protocol),
            },
        )),
        ..Default::default()
    }
}

/// Ordinary TLS to the static endpoints: SNI and the DNS name to verify, the given
/// roots or the system's; ALPN for HTTP ports only (an opaque protocol negotiates
/// nothing). Meshed endpoints always use mesh mTLS.
fn origin_tls(tls: &OriginTls, port: &ServicePort) -> TransportSocket {
    let trust = match &tls.ca_certificates {
        Some(pem) => CertificateValidationContext {
            trusted_ca: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(pem.clone())),
                ..Default::default()
            }),
            ..Default::default()
        },
        None => CertificateValidationContext {
            system_root_certs: Some(certificate_validation_context::SystemRootCerts {}),
            ..Default::default()
        },
    };
    let server_name = StringMatcher {
        match_pattern: Some(MatchPattern::Exact(tls.server_name.clone())),
        ignore_case: false,
    };
    // gRPC's xDS client reads only the deprecated untyped matchers, Envoy and
    // Remora only the typed ones when both are there: each checks the name.
    #[allow(deprecated)]
    let validation = CertificateValidationContext {
        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
            san_type: subject_alt_name_matcher::SanType::Dns as i32,
            matcher: Some(server_name.clone()),
            ..Default::default()
        }],
        match_subject_alt_names: vec![server_name],
        ..trust
    };
    let alpn = match port.protocol {
        p if p.is_opaque() => None,
        p if p.is_http2() => Some("h2"),
        _ => Some("http/1.1"),
    };
    let context = UpstreamTlsContext {
        sni: tls.server_name.clone(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(validation)),
            alpn_protocols: alpn.into_iter().map(str::to_owned).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{AppProtocol, ObjectKey};

    fn service(tls: Option<OriginTls>) -> Service {
        Service {
            key: ObjectKey::new("default", "payments"),
            ports: vec![ServicePort {
                name: None,
                port: 443,
                protocol: AppProtocol::Grpc,
                target_port: None,
            }],
            endpoints: Vec::new(),
            tls,
            authority: crate::resources::EndpointAuthority::named_like("payments"),
            cluster_ip: None,
        }
    }

    fn upstream_tls(c: &Cluster) -> UpstreamTlsContext {
        let Some(transport_socket::ConfigType::TypedConfig(any)) =
            &c.transport_socket.as_ref().unwrap().config_type
        else {
            panic!("no typed config")
        };
        assert_eq!(any.type_url, remora_proto::type_url::UPSTREAM_TLS_CONTEXT);
        prost::Message::decode(any.value.as_slice()).unwrap()
    }

    #[test]
    fn the_metadata_names_the_target_port_only_when_the_port_has_one() {
        use remora_proto::xds::google::protobuf::value::Kind;
        let remora = |c: &Cluster| {
            c.metadata.as_ref().unwrap().filter_metadata[names::METADATA_KEY]
                .fields
                .clone()
        };
        let mut s = service(None);
        let without = remora(&cluster(&s, &s.ports[0], None));
        assert!(!without.contains_key(TARGET_PORT), "{without:?}");
        s.ports[0].target_port = Some(8443);
        let with = remora(&cluster(&s, &s.ports[0], None));
        assert_eq!(with[TARGET_PORT].kind, Some(Kind::NumberValue(8443.0)));
        assert_eq!(with["port"].kind, Some(Kind::NumberValue(443.0)));
    }

    #[test]
    fn a_tls_service_gets_an_upstream_tls_context() {
        let s = service(None);
        assert!(cluster(&s, &s.ports[0], None).transport_socket.is_none());

        let s = service(Some(OriginTls {
            server_name: "payments.example.com".into(),
            ca_certificates: None,
        }));
        let tls = upstream_tls(&cluster(&s, &s.ports[0], None));
        assert_eq!(tls.sni, "payments.example.com");
        let common = tls.common_tls_context.unwrap();
        assert_eq!(common.alpn_protocols, ["h2"]);
        let Some(ValidationContextType::ValidationContext(v)) = common.validation_context_type
        else {
            panic!("no validation context")
        };
        assert!(v.system_root_certs.is_some() && v.trusted_ca.is_none());
        assert_eq!(v.match_typed_subject_alt_names.len(), 1);
        #[allow(deprecated)]
        let untyped = &v.match_subject_alt_names;
        assert_eq!(
            untyped[0].match_pattern,
            Some(MatchPattern::Exact("payments.example.com".into())),
            "gRPC checks the name with the untyped matcher"
        );

        let s = service(Some(OriginTls {
            server_name: "payments.example.com".into(),
            ca_certificates: Some("PEM".into()),
        }));
        let common = upstream_tls(&cluster(&s, &s.ports[0], None))
            .common_tls_context
            .unwrap();
        let Some(ValidationContextType::ValidationContext(v)) = common.validation_context_type
        else {
            panic!("no validation context")
        };
        assert_eq!(
            v.trusted_ca.and_then(|d| d.specifier),
            Some(data_source::Specifier::InlineString("PEM".into()))
        );
    }
}
