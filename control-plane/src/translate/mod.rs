//! Store + one proxy -> the xDS resources that proxy should hold, exactly as
//! docs/architecture.md describes them, consumable by Remora proxies and by gRPC's
//! xDS client (gRFC A27/A28; its Listeners and routes are in `proxyless.rs`, and
//! Clusters carry a `load_balancing_policy` list it accepts, `lb_policy.rs`).
//!
//! Pure: the same inputs always give the same resources, byte for byte, so a hash
//! of them is a version. Not here: which of them a proxy asked for, or when they
//! are sent ([`crate::xds`]).

pub mod names;

mod authorization;
mod cluster;
mod encode;
mod endpoint;
mod filters;
mod inbound;
mod lb_policy;
mod listener;
mod metadata;
mod outbound_chains;
mod proxyless;
mod resilience;
mod route;
mod tcp_proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use remora_proto::type_url;
use remora_proto::xds::envoy::config::core::v3::{
    address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier, Address,
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use remora_proto::xds::google::protobuf::Any;

use crate::authority;
use crate::resources::{ObjectKey, PolicyTarget};
use crate::store::Store;

/// The xDS resource types Remora serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl ResourceType {
    /// Make before break: what is referenced goes before what references it.
    pub const PUSH_ORDER: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => type_url::CLUSTER,
            ResourceType::Endpoint => type_url::ENDPOINT,
            ResourceType::Listener => type_url::LISTENER,
            ResourceType::Route => type_url::ROUTE,
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::PUSH_ORDER.into_iter().find(|t| t.type_url() == url)
    }

    /// Listeners and Clusters: every response holds the full set a client
    /// subscribed to, and a resource missing from it is deleted. Routes and
    /// endpoints are only ever sent by name.
    pub fn is_full_set(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

/// Resources by name.
pub type ResourceMap = BTreeMap<String, Any>;

/// All the resources of one proxy, by type. Each map is shared: the proxies
/// of one namespace hold the same clusters, endpoints and routes, and differ
/// only in their inbound listener, so a proxy's view copies the listeners
/// and no more (`xds::TranslationCache::resources_for`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub clusters: Arc<ResourceMap>,
    pub endpoints: Arc<ResourceMap>,
    pub listeners: Arc<ResourceMap>,
    pub routes: Arc<ResourceMap>,
}

impl Resources {
    pub fn get(&self, t: ResourceType) -> &ResourceMap {
        match t {
            ResourceType::Cluster => &self.clusters,
            ResourceType::Endpoint => &self.endpoints,
            ResourceType::Listener => &self.listeners,
            ResourceType::Route => &self.routes,
        }
    }
}

pub use crate::authority::Origin;

/// A proxy that fronts a Service: it receives that Service's traffic, on every
/// port, at `address` (its inbound listener). A connected proxy that
/// registered itself, or a pod the cluster says serves the Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeshEndpoint {
    pub service: ObjectKey,
    pub address: SocketAddr,
    /// The proxy's node id, or `pod/NAMESPACE/NAME` for a pod.
    pub node_id: String,
    /// The SPIFFE id its certificate carries, if it has one.
    pub identity: Option<String>,
    /// Where its xDS connection comes from (see [`crate::authority`]); `None`
    /// for a pod the cluster vouches for.
    pub peer: Option<SocketAddr>,
    /// Who vouches for it: endpoint authority checks each kind its own way.
    pub origin: Origin,
}

/// The resources for a proxy in `namespace`, given the Services' connected proxies.
/// Identities are in `trust_domain`.
pub fn translate(
    store: &Store,
    endpoints: &[MeshEndpoint],
    namespace: &str,
    trust_domain: &str,
) -> Resources {
    // Endpoint authority again, against the Services as they are now: one whose
    // annotations changed drops the endpoints it no longer admits.
    let mut by_service: BTreeMap<&ObjectKey, Vec<&MeshEndpoint>> = BTreeMap::new();
    for e in endpoints {
        let Some(service) = store.service(&e.service) else {
            continue;
        };
        let claim = authority::Claim {
            identity: e.identity.as_deref(),
            address: e.address,
            peer: e.peer,
            origin: e.origin,
        };
        if authority::check(service, trust_domain, claim).is_ok() {
            by_service.entry(&e.service).or_default().push(e);
        }
    }
    let mut out = Resources::default();
    for service in store.services() {
        let meshed = by_service
            .get(&service.key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for port in &service.ports {
            let policy = store.traffic_policy(&PolicyTarget::Service(service.key.clone()));
            let c = cluster::cluster(service, port, policy);
            Arc::make_mut(&mut out.clusters).insert(c.name.clone(), encode::cluster(&c));
            let cla = endpoint::assignment(service, port, meshed);
            Arc::make_mut(&mut out.endpoints)
                .insert(cla.cluster_name.clone(), encode::assignment(&cla));
        }
        // A proxy fronts a Service of its own namespace.
        if service.key.namespace == namespace {
            let l = inbound::listener(store, service, trust_domain);
            Arc::make_mut(&mut out.listeners).insert(l.name.clone(), encode::listener(&l));
        }
    }
    // Each HTTP port's virtual host, for proxies in one RouteConfiguration, for
    // gRPC clients (which speak HTTP/2 only: opaque ports have nothing for them)
    // in one of its own.
    let mut virtual_hosts = Vec::new();
    for host in route::virtual_hosts(store, namespace) {
        proxyless::add(&host, &mut out);
        virtual_hosts.push(host.virtual_host);
    }
    let routes = route::outbound(virtual_hosts);
    Arc::make_mut(&mut out.routes).insert(routes.name.clone(), encode::message(&routes));
    let outbound = listener::outbound(store);
    Arc::make_mut(&mut out.listeners).insert(outbound.name.clone(), encode::listener(&outbound));
    out
}

/// "Over the same ADS stream", xDS v3.
fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn socket_address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(addr.port().into())),
            ..Default::default()
        })),
    }
}

#[cfg(test)]
mod opaque_policy_tests;
#[cfg(test)]
mod opaque_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod target_port_tests;
#[cfg(test)]
mod tests;
