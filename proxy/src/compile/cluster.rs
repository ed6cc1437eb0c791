//! Cluster + ClusterLoadAssignment -> a compiled cluster of long-lived endpoints.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use remora_proto::prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy,
};
use remora_proto::xds::envoy::config::cluster::v3::Cluster as XdsCluster;
use remora_proto::xds::envoy::config::core::v3::{
    address, data_source, socket_address::PortSpecifier, transport_socket, HealthStatus, Metadata,
};
use remora_proto::xds::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
    UpstreamTlsContext,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
};
use remora_proto::xds::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use remora_proto::xds::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use remora_proto::xds::google::protobuf::value::Kind;

use super::CompileError;
use crate::balance::ring::MAX_RING_SIZE;
use crate::balance::{Balancer, Ring, RoundRobin};
use crate::resilience::BudgetConfig;
use crate::upstream::{
    Cluster, ConnectionTimeouts, EndpointRegistry, Limits, OriginClient, OriginTls, OutlierConfig,
    Peer, Protocol, Transport, WeightedEndpoint, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
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
    let origin = origin_tls(c, protocol)?;
    let idle = idle_timeout(c)?;
    let connect_timeout = match &c.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(d) if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) => {
            return Err(CompileError::new(
                "Cluster",
                &c.name,
                "connect_timeout",
                "must be greater than zero",
            ))
        }
        Some(d) => std::time::Duration::new(d.seconds as u64, d.nanos as u32),
    };
    let timeouts = ConnectionTimeouts {
        connect: connect_timeout,
        idle,
    };
    let assignment = match eds_service_name(c)? {
        Some(service) => assignments.get(&service),
        None => c.load_assignment.as_ref(),
    };
    let endpoints = match assignment {
        None => Vec::new(),
        Some(cla) => endpoints(&c.name, cla)?
            .into_iter()
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
    let balancer = balancer(c, &endpoints)?;
    Ok(Cluster {
        name: Arc::from(c.name.as_str()),
        protocol,
        balancer,
        endpoints,
        retry_budget: retry_budget(c)?,
        outlier: outlier(c)?,
        limits: limits(c),
        state: registry.cluster_state(&c.name),
    })
}

/// The cluster's `transport_socket`: ordinary TLS to its unmeshed endpoints, which
/// must verify the server by the DNS name sent as SNI.
fn origin_tls(
    c: &XdsCluster,
    protocol: Protocol,
) -> Result<Option<Arc<OriginClient>>, CompileError> {
    let Some(socket) = &c.transport_socket else {
        return Ok(None);
    };
    let err = |f: &str, m: String| {
        CompileError::new("Cluster", &c.name, format!("transport_socket{f}"), m)
    };
    let any = match &socket.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => any,
        _ => return Err(err(".typed_config", "missing".into())),
    };
    if any.type_url != type_url::UPSTREAM_TLS_CONTEXT {
        return Err(err(
            ".typed_config",
            format!(
                "expected {}, got {}",
                type_url::UPSTREAM_TLS_CONTEXT,
                any.type_url
            ),
        ));
    }
    let tls = UpstreamTlsContext::decode(any.value.as_slice())
        .map_err(|e| err(".typed_config", format!("cannot decode: {e}")))?;
    let field = ".typed_config.common_tls_context.validation_context";
    let validation = match tls
        .common_tls_context
        .and_then(|c| c.validation_context_type)
    {
        Some(ValidationContextType::ValidationContext(v)) => v,
        _ => {
            return Err(err(
                field,
                "required: a server outside the mesh must be verified".into(),
            ))
        }
    };
    if tls.sni.is_empty() {
        return Err(err(
            ".typed_config.sni",
            "required: the server's DNS name".into(),
        ));
    }
    // The name verified is the SNI: the SAN matcher may only repeat it.
    for (i, m) in validation.match_typed_subject_alt_names.iter().enumerate() {
        let exact = match m.matcher.as_ref().and_then(|m| m.match_pattern.as_ref()) {
            Some(MatchPattern::Exact(name)) => Some(name),
            _ => None,
        };
        if m.san_type != SanType::Dns as i32 || exact != Some(&tls.sni) {
            return Err(err(
                &format!("{field}.match_typed_subject_alt_names[{i}]"),
                format!(
                    "only an exact DNS match on the SNI (`{}`) is supported",
                    tls.sni
                ),
            ));
        }
    }
    let ca_pem = match validation.trusted_ca.and_then(|d| d.specifier) {
        Some(data_source::Specifier::InlineString(pem)) => Some(pem),
        Some(data_source::Specifier::InlineBytes(bytes)) => Some(
            String::from_utf8(bytes)
                .map_err(|_| err(&format!("{field}.trusted_ca"), "not PEM text".into()))?,
        ),
        Some(_) => {
            return Err(err(
                &format!("{field}.trusted_ca"),
                "only inline_string and inline_bytes are supported".into(),
            ))
        }
        None if validation.system_root_certs.is_some() => None,
        None => {
            return Err(err(
                field,
                "trusted_ca or system_root_certs is required: a server outside the mesh must be verified".into(),
            ))
        }
    };
    let alpn: &'static [u8] = match protocol {
        Protocol::Http1 => b"http/1.1",
        Protocol::Http2 => b"h2",
    };
    let origin = OriginTls {
        server_name: tls.sni.clone(),
        ca_pem,
        alpn,
    };
    OriginClient::new(origin)
        .map(|o| Some(Arc::new(o)))
        .map_err(|m| err(field, m))
}

/// `lb_policy`: `LEAST_REQUEST` is power of two choices over requests in flight,
/// or over Remora's peak-EWMA latency x requests when the cluster's metadata says
/// `remora.balancer: peak-ewma`; `ROUND_ROBIN` is weighted round robin;
/// `RING_HASH` (and `MAGLEV`, served the same way) hashes the route's hash key,
/// with 256 points per unit of weight unless `minimum_ring_size` asks for more.
fn balancer(c: &XdsCluster, endpoints: &[WeightedEndpoint]) -> Result<Balancer, CompileError> {
    let err = |f: &str, m: String| CompileError::new("Cluster", &c.name, f, m);
    match LbPolicy::try_from(c.lb_policy) {
        Ok(LbPolicy::LeastRequest) => {
            let peak_ewma = c
                .metadata
                .as_ref()
                .and_then(|m| m.filter_metadata.get("remora"))
                .and_then(|s| s.fields.get("balancer"))
                .is_some_and(|v| matches!(&v.kind, Some(Kind::StringValue(b)) if b == "peak-ewma"));
            Ok(if peak_ewma {
                Balancer::PeakEwma
            } else {
                Balancer::LeastRequest
            })
        }
        Ok(LbPolicy::RoundRobin) => Ok(Balancer::RoundRobin(RoundRobin::new(endpoints))),
        Ok(LbPolicy::RingHash | LbPolicy::Maglev) => {
            let minimum = match &c.lb_config {
                Some(LbConfig::RingHashLbConfig(r)) => r.minimum_ring_size.map(|s| s.value),
                _ => None,
            };
            if minimum.is_some_and(|m| m > MAX_RING_SIZE as u64) {
                return Err(err(
                    "ring_hash_lb_config.minimum_ring_size",
                    format!("at most {MAX_RING_SIZE}"),
                ));
            }
            Ok(Balancer::RingHash(Ring::new(
                endpoints,
                minimum.map(|m| m as usize),
            )))
        }
        Ok(other) => Err(err(
            "lb_policy",
            format!(
                "{} is not supported (LEAST_REQUEST, ROUND_ROBIN, RING_HASH and MAGLEV are)",
                other.as_str_name()
            ),
        )),
        Err(_) => Err(err("lb_policy", format!("unknown policy {}", c.lb_policy))),
    }
}

/// `outlier_detection`: consecutive failures only (`consecutive_5xx`, which counts
/// connect failures and resets too, as Envoy does without
/// `split_external_local_origin_errors`); success-rate and failure-percentage
/// ejection are not implemented and refused when enforced.
fn outlier(c: &XdsCluster) -> Result<Option<OutlierConfig>, CompileError> {
    let Some(o) = &c.outlier_detection else {
        return Ok(None);
    };
    let err = |f: &str, m: &str| {
        CompileError::new("Cluster", &c.name, format!("outlier_detection.{f}"), m)
    };
    let d = OutlierConfig::DEFAULT;
    if o.enforcing_consecutive_5xx.is_some_and(|e| e.value == 0) {
        return Ok(None);
    }
    if o.failure_percentage_threshold.is_some() {
        return Err(err(
            "failure_percentage_threshold",
            "failure-percentage ejection is not supported",
        ));
    }
    if o.success_rate_minimum_hosts.is_some()
        || o.success_rate_request_volume.is_some()
        || o.success_rate_stdev_factor.is_some()
    {
        return Err(err(
            "success_rate_stdev_factor",
            "success-rate ejection is not supported",
        ));
    }
    let duration =
        |v: &Option<remora_proto::xds::google::protobuf::Duration>, f: &str, default| match v {
            None => Ok(default),
            Some(v) if v.seconds < 0 || v.nanos < 0 => Err(err(f, "must not be negative")),
            Some(v) => Ok(std::time::Duration::new(v.seconds as u64, v.nanos as u32)),
        };
    let max_percent = o
        .max_ejection_percent
        .map_or(d.max_ejection_percent, |p| p.value);
    if max_percent > 100 {
        return Err(err("max_ejection_percent", "must be at most 100"));
    }
    Ok(Some(OutlierConfig {
        consecutive_failures: o
            .consecutive_5xx
            .map_or(d.consecutive_failures, |n| n.value)
            .max(1),
        base_ejection_time: duration(
            &o.base_ejection_time,
            "base_ejection_time",
            d.base_ejection_time,
        )?,
        max_ejection_time: duration(
            &o.max_ejection_time,
            "max_ejection_time",
            d.max_ejection_time,
        )?,
        max_ejection_percent: max_percent,
    }))
}

/// `circuit_breakers.thresholds[0]`: `max_requests` and `max_connections`.
/// Remora does not queue, so `max_pending_requests` has nothing to bound.
fn limits(c: &XdsCluster) -> Limits {
    let Some(t) = c
        .circuit_breakers
        .as_ref()
        .and_then(|cb| cb.thresholds.first())
    else {
        return Limits::default();
    };
    Limits {
        max_requests: t.max_requests.map(|v| v.value),
        max_connections: t.max_connections.map(|v| v.value),
    }
}

/// `circuit_breakers.thresholds[0].retry_budget` (default priority only); without
/// one, the default budget: retries are always budgeted.
fn retry_budget(c: &XdsCluster) -> Result<BudgetConfig, CompileError> {
    let Some(t) = c
        .circuit_breakers
        .as_ref()
        .and_then(|cb| cb.thresholds.first())
    else {
        return Ok(BudgetConfig::DEFAULT);
    };
    let Some(budget) = &t.retry_budget else {
        return Ok(BudgetConfig::DEFAULT);
    };
    let err = |f: &str, m: String| {
        CompileError::new(
            "Cluster",
            &c.name,
            format!("circuit_breakers.thresholds[0].retry_budget.{f}"),
            m,
        )
    };
    let ratio = match budget.budget_percent {
        None => BudgetConfig::DEFAULT.ratio,
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value / 100.0,
        Some(p) => {
            return Err(err(
                "budget_percent",
                format!("{} is not a percentage", p.value),
            ))
        }
    };
    let window = match &budget.budget_interval {
        None => BudgetConfig::DEFAULT.window,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err(err("budget_interval", "must not be negative".into()))
        }
        Some(d) => Some(std::time::Duration::new(d.seconds as u64, d.nanos as u32))
            .filter(|w| !w.is_zero())
            .unwrap_or(BudgetConfig::DEFAULT.window),
    };
    Ok(BudgetConfig {
        ratio,
        min_per_second: budget
            .min_retry_concurrency
            .map_or(BudgetConfig::DEFAULT.min_per_second, |m| m.value),
        window,
    })
}

/// `common_http_protocol_options.idle_timeout` of the HTTP protocol options (Envoy's
/// default: 1 h; 0 disables, which Remora takes as the longest it can wait).
fn idle_timeout(c: &XdsCluster) -> Result<std::time::Duration, CompileError> {
    let Some(any) = c
        .typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    else {
        return Ok(DEFAULT_IDLE_TIMEOUT);
    };
    let options = HttpProtocolOptions::decode(any.value.as_slice()).map_err(|e| {
        CompileError::new(
            "Cluster",
            &c.name,
            "typed_extension_protocol_options",
            format!("cannot decode: {e}"),
        )
    })?;
    match options
        .common_http_protocol_options
        .and_then(|o| o.idle_timeout)
    {
        None => Ok(DEFAULT_IDLE_TIMEOUT),
        Some(d) if d.seconds < 0 || d.nanos < 0 => Err(CompileError::new(
            "Cluster",
            &c.name,
            "typed_extension_protocol_options.common_http_protocol_options.idle_timeout",
            "must not be negative",
        )),
        Some(d) if (d.seconds, d.nanos) == (0, 0) => {
            Ok(std::time::Duration::from_secs(365 * 24 * 3600))
        }
        Some(d) => Ok(std::time::Duration::new(d.seconds as u64, d.nanos as u32)),
    }
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

fn identity(metadata: Option<&Metadata>) -> Option<String> {
    metadata
        .and_then(|m| m.filter_metadata.get("remora"))
        .and_then(|s| s.fields.get("identity"))
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
}

fn is_meshed(metadata: Option<&Metadata>) -> bool {
    metadata
        .and_then(|m| m.filter_metadata.get("remora"))
        .and_then(|s| s.fields.get("meshed"))
        .is_some_and(|v| matches!(v.kind, Some(Kind::BoolValue(true))))
}
