//! Cluster + ClusterLoadAssignment -> a compiled cluster of long-lived endpoints.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use remora_proto::prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use remora_proto::xds::envoy::config::cluster::v3::Cluster as XdsCluster;
use remora_proto::xds::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, HealthStatus, Metadata,
};
use remora_proto::xds::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use remora_proto::xds::google::protobuf::value::Kind;

use super::cluster_policy::{idle_timeout, limits, outlier, retry_budget};
use super::lb_policy::balancer;
use super::metadata;
use super::origin::origin_tls;
use super::CompileError;
use crate::upstream::{
    Cluster, ConnectionTimeouts, EndpointRegistry, Peer, Protocol, TargetPort, Transport,
    WeightedEndpoint, DEFAULT_CONNECT_TIMEOUT,
};

/// The name under which a cluster's endpoints arrive over EDS, if it uses EDS.
pub fn eds_service_name(c: &XdsCluster) -> Result<Option<String>, CompileError> {
    match discovery_type(c)? {
        DiscoveryType::Eds => Ok(Some(
            c.eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| c.name.clone()),
        )),
        _ => Ok(None),
    }
}

fn discovery_type(c: &XdsCluster) -> Result<DiscoveryType, CompileError> {
    let err = |m: String| CompileError::new("Cluster", &c.name, "type", m);
    match &c.cluster_discovery_type {
        None => Ok(DiscoveryType::Static),
        Some(ClusterDiscoveryType::Type(t)) => match DiscoveryType::try_from(*t) {
            Ok(t @ (DiscoveryType::Eds | DiscoveryType::Static)) => Ok(t),
            Ok(other) => Err(err(format!(
                "discovery type {} is not supported (EDS and STATIC are)",
                other.as_str_name()
            ))),
            Err(_) => Err(err(format!("unknown discovery type {t}"))),
        },
        Some(ClusterDiscoveryType::ClusterType(custom)) => Err(CompileError::new(
            "Cluster",
            &c.name,
            "cluster_type",
            format!("custom cluster type `{}` is not supported", custom.name),
        )),
    }
}

pub fn compile(
    c: &XdsCluster,
    assignments: &BTreeMap<String, ClusterLoadAssignment>,
    registry: &EndpointRegistry,
) -> Result<Cluster, CompileError> {
    if c.name.is_empty() {
        return Err(CompileError::new("Cluster", "", "name", "empty"));
    }
    let protocol = protocol(c)?;
    let target_port = target_port(c)?;
    let origin = origin_tls(c, protocol)?;
    let idle = idle_timeout(c)?;
    let connect_timeout = match &c.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(d) => super::duration(d, "connect_timeout")
            .and_then(|d| {
                (!d.is_zero())
                    .then_some(d)
                    .ok_or(("connect_timeout".into(), "must be greater than zero".into()))
            })
            .map_err(|(f, m)| CompileError::new("Cluster", &c.name, f, m))?,
    };
    let timeouts = ConnectionTimeouts {
        connect: connect_timeout,
        idle,
    };
    let assignment = match eds_service_name(c)? {
        Some(service) => assignments.get(&service),
        None => c.load_assignment.as_ref(),
    };
    let mut announced = match assignment {
        None => Vec::new(),
        Some(cla) => endpoints(&c.name, cla)?,
    };
    // A meshed endpoint that proves no identity would get the callers' requests
    // in plaintext: only where the cluster says the Service allows that.
    if !allows_unauthenticated_endpoints(c) {
        announced.retain(|e| !e.meshed || e.identity.is_some());
    }
    // The identities its meshed endpoints announce, for metrics: normally one
    // (a Service's workloads share a service account).
    let mut identities: Vec<&str> = announced
        .iter()
        .filter_map(|e| e.identity.as_deref())
        .collect();
    identities.sort_unstable();
    identities.dedup();
    let destination_identity = identities.join(",");
    let endpoints = match assignment {
        None => Vec::new(),
        Some(_) => announced
            .iter()
            .map(|e| {
                let (transport, peer) = match (e.meshed, protocol, &origin) {
                    (true, _, _) => (
                        Transport::MeshH2,
                        e.identity.as_deref().map_or(Peer::None, Peer::Mesh),
                    ),
                    (false, Protocol::Http1, None) => (Transport::PlainH1, Peer::None),
                    (false, Protocol::Http2, None) => (Transport::PlainH2, Peer::None),
                    (false, Protocol::Http1, Some(o)) => (Transport::TlsH1, Peer::Origin(o)),
                    (false, Protocol::Http2, Some(o)) => (Transport::TlsH2, Peer::Origin(o)),
                };
                WeightedEndpoint {
                    endpoint: registry.endpoint(e.addr, transport, peer, timeouts),
                    weight: e.weight,
                }
            })
            .collect(),
    };
    let limits = limits(c);
    // One shared connection per HTTP/2 endpoint: a subset of `max_connections`
    // endpoints keeps the connections within it (opaque TCP counts its own).
    let endpoints = match limits.max_connections {
        Some(max) if !is_opaque(c) && shares_connections(&endpoints) => {
            crate::balance::subset::subset(endpoints, max as usize)
        }
        _ => endpoints,
    };
    let balancer = balancer(c, &endpoints)?;
    let meshed = endpoints
        .first()
        .is_some_and(|e| e.endpoint.transport() == Transport::MeshH2);
    let concurrency = limits.concurrency(protocol, meshed);
    Ok(Cluster {
        name: Arc::from(c.name.as_str()),
        destination: destination(c),
        destination_identity,
        protocol,
        balancer,
        endpoints,
        retry_budget: retry_budget(c)?,
        outlier: outlier(c)?,
        limits,
        concurrency,
        fault: None,
        target_port,
        state: registry.cluster_state(&c.name),
    })
}

/// `metadata.remora.target_port`: the app port behind the Service port, which
/// a meshed endpoint's proxy is asked for; absent when the Service port has no
/// `targetPort`. Anything but a whole number from 1 to 65535 rejects the
/// cluster: a wrong port would reach another app port.
fn target_port(c: &XdsCluster) -> Result<Option<TargetPort>, CompileError> {
    let Some(value) = metadata::remora(c.metadata.as_ref(), "target_port") else {
        return Ok(None);
    };
    if let Some(port) = metadata::port(value) {
        return Ok(Some(TargetPort::new(port)));
    }
    let shown = match &value.kind {
        Some(Kind::NumberValue(n)) => n.to_string(),
        Some(Kind::StringValue(s)) => format!("\"{s}\""),
        _ => "a value that is not a number".to_owned(),
    };
    Err(CompileError::new(
        "Cluster",
        &c.name,
        "metadata.filter_metadata.remora.target_port",
        format!("{shown} is not a port (a whole number from 1 to 65535)"),
    ))
}

fn protocol(c: &XdsCluster) -> Result<Protocol, CompileError> {
    let Some(any) = c
        .typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    else {
        #[allow(deprecated)]
        let legacy_h2 = c.http2_protocol_options.is_some();
        return Ok(if legacy_h2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        });
    };
    let field =
        "typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions]";
    let err = |m: String| CompileError::new("Cluster", &c.name, field, m);
    if any.type_url != type_url::HTTP_PROTOCOL_OPTIONS {
        return Err(err(format!("unexpected type {}", any.type_url)));
    }
    let options = HttpProtocolOptions::decode(any.value.as_slice())
        .map_err(|e| err(format!("cannot decode: {e}")))?;
    match options.upstream_protocol_options {
        None => Ok(Protocol::Http1),
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
            match explicit.protocol_config {
                Some(ProtocolConfig::Http2ProtocolOptions(_)) => Ok(Protocol::Http2),
                Some(ProtocolConfig::HttpProtocolOptions(_)) | None => Ok(Protocol::Http1),
                Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                    Err(err("HTTP/3 upstreams are not supported".into()))
                }
            }
        }
        Some(_) => Err(err("only explicit_http_config is supported upstream".into())),
    }
}

pub struct ParsedEndpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    pub meshed: bool,
    /// The SPIFFE id a meshed endpoint must present.
    pub identity: Option<String>,
}

pub fn check_assignment(name: &str, cla: &ClusterLoadAssignment) -> Result<(), CompileError> {
    endpoints(name, cla).map(|_| ())
}

/// The usable endpoints of an assignment; unhealthy ones are left out.
pub fn endpoints(
    name: &str,
    cla: &ClusterLoadAssignment,
) -> Result<Vec<ParsedEndpoint>, CompileError> {
    let mut out = Vec::new();
    for (i, locality) in cla.endpoints.iter().enumerate() {
        for (j, lb) in locality.lb_endpoints.iter().enumerate() {
            let field = format!("endpoints[{i}].lb_endpoints[{j}]");
            let err = |f: &str, m: String| {
                CompileError::new("ClusterLoadAssignment", name, format!("{field}.{f}"), m)
            };
            let health = HealthStatus::try_from(lb.health_status).unwrap_or(HealthStatus::Unknown);
            if matches!(
                health,
                HealthStatus::Unhealthy | HealthStatus::Draining | HealthStatus::Timeout
            ) {
                continue;
            }
            let socket = match &lb.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(e)) => e
                    .address
                    .as_ref()
                    .and_then(|a| match &a.address {
                        Some(address::Address::SocketAddress(s)) => Some(s),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        err("endpoint.address", "a socket address is required".into())
                    })?,
                _ => return Err(err("endpoint", "missing".into())),
            };
            let ip: IpAddr = socket.address.parse().map_err(|_| {
                err(
                    "endpoint.address.socket_address.address",
                    format!("`{}` is not an IP address", socket.address),
                )
            })?;
            let port = match socket.port_specifier {
                Some(PortSpecifier::PortValue(p)) if (1..=65535).contains(&p) => p as u16,
                _ => {
                    return Err(err(
                        "endpoint.address.socket_address.port_value",
                        "a port between 1 and 65535 is required".into(),
                    ))
                }
            };
            let weight = lb.load_balancing_weight.map(|w| w.value).unwrap_or(1);
            if weight == 0 {
                return Err(err("load_balancing_weight", "must be at least 1".into()));
            }
            let meshed = is_meshed(lb.metadata.as_ref());
            out.push(ParsedEndpoint {
                addr: SocketAddr::new(ip, port),
                weight,
                meshed,
                identity: meshed.then(|| identity(lb.metadata.as_ref())).flatten(),
            });
        }
    }
    Ok(out)
}

/// `metadata.remora.{service, namespace}`; the cluster name when absent.
fn destination(c: &XdsCluster) -> (String, String) {
    let field = |key: &str| {
        metadata::remora(c.metadata.as_ref(), key).and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
    };
    (
        field("service").unwrap_or_else(|| c.name.clone()),
        field("namespace").unwrap_or_default(),
    )
}

fn identity(m: Option<&Metadata>) -> Option<String> {
    metadata::remora(m, "identity").and_then(|v| match &v.kind {
        Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// Whether every endpoint is reached over one shared HTTP/2 connection.
fn shares_connections(endpoints: &[WeightedEndpoint]) -> bool {
    endpoints.iter().all(|e| {
        matches!(
            e.endpoint.transport(),
            Transport::MeshH2 | Transport::PlainH2 | Transport::TlsH2
        )
    })
}

/// `metadata.remora.protocol: tcp`: an opaque TCP cluster.
fn is_opaque(c: &XdsCluster) -> bool {
    metadata::remora(c.metadata.as_ref(), "protocol")
        .is_some_and(|v| matches!(&v.kind, Some(Kind::StringValue(p)) if p == "tcp"))
}

/// `metadata.remora.allow_unauthenticated_endpoints: true` (the Service's
/// `remora.io/allow-unauthenticated-endpoints` annotation).
fn allows_unauthenticated_endpoints(c: &XdsCluster) -> bool {
    metadata::remora(c.metadata.as_ref(), "allow_unauthenticated_endpoints")
        .is_some_and(|v| matches!(v.kind, Some(Kind::BoolValue(true))))
}

fn is_meshed(m: Option<&Metadata>) -> bool {
    metadata::remora(m, "meshed").is_some_and(|v| matches!(v.kind, Some(Kind::BoolValue(true))))
}
