//! Opaque TCP in the listeners. The outbound listener's chains after the first
//! say which Service port a connection is for (by cluster IP and port, or by
//! name for the bootstrap's `upstreams`) and whether it is carried as opaque TCP
//! (`tcp_proxy`) or through the HTTP path. The inbound listener's `tcp_proxy`
//! chains name the app ports that take mesh TCP, and who may connect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use remora_proto::prost::Message;
use remora_proto::xds::envoy::config::core::v3::Metadata;
use remora_proto::xds::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use remora_proto::xds::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use remora_proto::xds::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};
use remora_proto::xds::google::protobuf::value::Kind;
use remora_proto::xds::google::protobuf::Any;

use remora_proto::type_url::{NETWORK_RBAC, TCP_PROXY};

use super::CompileError;
use crate::authz::Authorization;
use crate::snapshot::{Carry, Destination, Destinations, PinnedDestination};
use crate::upstream::Cluster;

pub const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
/// Envoy's default: an opaque connection with no byte either way for an hour is
/// closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

type Field = (String, String);

/// Whether a filter chain carries opaque TCP (it ends with `tcp_proxy`).
pub fn is_tcp(chain: &FilterChain) -> bool {
    chain.filters.iter().any(|f| f.name == TCP_PROXY_FILTER)
}

/// The outbound listener's chains after the first (the HTTP one): every Service
/// port the proxy can reach by address or name. A chain naming a cluster this
/// snapshot lacks is an error, as a route naming one is. Also returns each
/// chain's destination, in order, to pin endpoints again when only they change
/// ([`pin_endpoints`]).
pub fn outbound(
    l: &Listener,
    clusters: &HashMap<Arc<str>, Arc<Cluster>>,
) -> Result<(Destinations, Vec<Arc<Destination>>), CompileError> {
    let err = |(field, message): Field| CompileError::new("Listener", &l.name, field, message);
    let mut out = Destinations::default();
    let mut chains = Vec::with_capacity(l.filter_chains.len().saturating_sub(1));
    for (i, chain) in l.filter_chains.iter().enumerate().skip(1) {
        let path = format!("filter_chains[{i}]");
        let destination = Arc::new(destination(chain, &path, clusters).map_err(err)?);
        let port = destination.port;
        for ip in cluster_ips(chain, &path).map_err(err)? {
            let addr = SocketAddr::new(ip, port);
            if out.by_address.insert(addr, destination.clone()).is_some() {
                return Err(err((
                    format!("{path}.filter_chain_match"),
                    format!("{addr} is matched by an earlier chain too"),
                )));
            }
        }
        let key = Destinations::key(&destination.service, &destination.namespace, port);
        endpoints_of(&destination, clusters, &mut out.by_endpoint);
        chains.push(destination.clone());
        out.by_name.insert(key, destination);
    }
    Ok((out, chains))
}

/// The endpoints of the chains' destinations by address, as [`outbound`] pins
/// them, against `clusters` (whose endpoints may have changed since).
pub fn pin_endpoints(
    chains: &[Arc<Destination>],
    clusters: &HashMap<Arc<str>, Arc<Cluster>>,
) -> HashMap<SocketAddr, Option<PinnedDestination>> {
    let mut out = HashMap::new();
    for destination in chains {
        endpoints_of(destination, clusters, &mut out);
    }
    out
}

/// Adds `destination`'s endpoints by IP and the Service port; an address two
/// Services' endpoints share maps to `None`.
fn endpoints_of(
    destination: &Arc<Destination>,
    clusters: &HashMap<Arc<str>, Arc<Cluster>>,
    out: &mut HashMap<SocketAddr, Option<PinnedDestination>>,
) {
    let name = match &destination.carry {
        Carry::Opaque { cluster, .. } => cluster.to_string(),
        // The cluster of an HTTP port is named as every Service port's is.
        Carry::Http { .. } => format!(
            "outbound|{}||{}.{}.svc.cluster.local",
            destination.port, destination.service, destination.namespace
        ),
    };
    let Some(cluster) = clusters.get(name.as_str()) else {
        return;
    };
    for e in &cluster.endpoints {
        let addr = SocketAddr::new(e.endpoint.addr().ip(), destination.port);
        out.entry(addr)
            .and_modify(|v| *v = None)
            .or_insert_with(|| Some((destination.clone(), e.endpoint.clone())));
    }
}

fn destination(
    chain: &FilterChain,
    path: &str,
    clusters: &HashMap<Arc<str>, Arc<Cluster>>,
) -> Result<Destination, Field> {
    let meta = |key: &str| metadata_string(chain.metadata.as_ref(), key);
    let required = |key: &str| {
        meta(key).ok_or_else(|| {
            (
                format!("{path}.metadata.filter_metadata.remora.{key}"),
                "missing".to_owned(),
            )
        })
    };
    let service = required("service")?;
    let namespace = required("namespace")?;
    let port = destination_port(chain, path, "a port")?;
    let (i, filter) = chain
        .filters
        .iter()
        .enumerate()
        .find(|(_, f)| f.name == TCP_PROXY_FILTER || f.name == HCM_FILTER)
        .ok_or_else(|| {
            (
                format!("{path}.filters"),
                format!("neither {TCP_PROXY_FILTER} nor {HCM_FILTER}"),
            )
        })?;
    let carry = if filter.name == TCP_PROXY_FILTER {
        let (cluster, idle_timeout) = tcp_proxy(filter, &format!("{path}.filters[{i}]"))?;
        let cluster = clusters
            .get_key_value(cluster.as_str())
            .map(|(name, _)| name.clone())
            .ok_or_else(|| {
                (
                    format!("{path}.filters[{i}].typed_config.cluster"),
                    format!("unknown cluster `{cluster}`"),
                )
            })?;
        Carry::Opaque {
            cluster,
            idle_timeout,
        }
    } else {
        Carry::Http {
            authority: required("authority")?.into(),
        }
    };
    Ok(Destination {
        service,
        namespace,
        port,
        app_protocol: meta("protocol").unwrap_or_else(|| "tcp".into()),
        carry,
    })
}

/// The chain's cluster IPs: single addresses only (`/32`, `/128`).
fn cluster_ips(chain: &FilterChain, path: &str) -> Result<Vec<IpAddr>, Field> {
    let Some(m) = &chain.filter_chain_match else {
        return Ok(Vec::new());
    };
    m.prefix_ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("{path}.filter_chain_match.prefix_ranges[{i}]");
            let ip: IpAddr = r.address_prefix.parse().map_err(|_| {
                (
                    format!("{field}.address_prefix"),
                    format!("`{}` is not an IP address", r.address_prefix),
                )
            })?;
            let full = if ip.is_ipv4() { 32 } else { 128 };
            match r.prefix_len.map(|p| p.value) {
                None => Ok(ip),
                Some(len) if len == full => Ok(ip),
                Some(len) => Err((
                    format!("{field}.prefix_len"),
                    format!("{len}: only single addresses (cluster IPs) are supported"),
                )),
            }
        })
        .collect()
}

/// A `tcp_proxy` filter's cluster and idle timeout.
pub fn tcp_proxy(filter: &Filter, path: &str) -> Result<(String, Duration), Field> {
    let field = format!("{path}.typed_config");
    let any = typed_config(filter, &field, TCP_PROXY)?;
    let proxy = TcpProxy::decode(any.value.as_slice())
        .map_err(|e| (field.clone(), format!("cannot decode: {e}")))?;
    let cluster = match proxy.cluster_specifier {
        Some(ClusterSpecifier::Cluster(name)) if !name.is_empty() => name,
        Some(ClusterSpecifier::WeightedClusters(_)) => {
            return Err((
                format!("{field}.weighted_clusters"),
                "not supported (split TCP with a route-less Service instead)".into(),
            ))
        }
        _ => return Err((format!("{field}.cluster"), "missing".into())),
    };
    let idle_timeout = match &proxy.idle_timeout {
        Some(d) => super::duration(d, &format!("{field}.idle_timeout"))?,
        None => DEFAULT_IDLE_TIMEOUT,
    };
    Ok((cluster, idle_timeout))
}

/// The port and authorization of one of the inbound listener's TCP chains.
pub fn inbound(chain: &FilterChain, path: &str) -> Result<(u16, Authorization, Duration), Field> {
    let port = destination_port(chain, path, "the app port")?;
    let mut authorization = Authorization::default();
    let mut idle_timeout = DEFAULT_IDLE_TIMEOUT;
    let last = chain.filters.len().saturating_sub(1);
    for (i, f) in chain.filters.iter().enumerate() {
        let field = format!("{path}.filters[{i}]");
        match f.name.as_str() {
            TCP_PROXY_FILTER if i == last => {
                idle_timeout = tcp_proxy(f, &field)?.1;
            }
            TCP_PROXY_FILTER => {
                return Err((field, "tcp_proxy must be the last filter".into()));
            }
            _ => {
                let any = typed_config(f, &format!("{field}.typed_config"), NETWORK_RBAC)?;
                let rbac = NetworkRbac::decode(any.value.as_slice()).map_err(|e| {
                    (
                        format!("{field}.typed_config"),
                        format!("cannot decode: {e}"),
                    )
                })?;
                let matcher = rbac.matcher.is_some() || rbac.shadow_matcher.is_some();
                super::inbound::rbac(matcher, rbac.rules, &mut authorization)
                    .map_err(|(f, m)| (format!("{field}.typed_config.{f}"), m))?;
            }
        }
    }
    if chain
        .filters
        .last()
        .is_none_or(|f| f.name != TCP_PROXY_FILTER)
    {
        return Err((format!("{path}.filters"), "must end with tcp_proxy".into()));
    }
    Ok((port, authorization, idle_timeout))
}

/// The chain's `filter_chain_match.destination_port` (1-65535); `what` names
/// it in the error.
fn destination_port(chain: &FilterChain, path: &str, what: &str) -> Result<u16, Field> {
    chain
        .filter_chain_match
        .as_ref()
        .and_then(|m| m.destination_port)
        .and_then(|p| u16::try_from(p.value).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            (
                format!("{path}.filter_chain_match.destination_port"),
                format!("{what} (1-65535) is required"),
            )
        })
}

fn typed_config<'a>(f: &'a Filter, field: &str, expected: &str) -> Result<&'a Any, Field> {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) if any.type_url == expected => Ok(any),
        Some(filter::ConfigType::TypedConfig(any)) => Err((
            field.to_owned(),
            format!("expected {expected}, got {}", any.type_url),
        )),
        _ => Err((field.to_owned(), "missing".into())),
    }
}

fn metadata_string(m: Option<&Metadata>, key: &str) -> Option<String> {
    let value = super::metadata::remora(m, key)?;
    match &value.kind {
        Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        Some(Kind::NumberValue(n)) => Some(n.to_string()),
        _ => None,
    }
}
