//! xDS resources in, a `Snapshot` or a list of rejections out. Pure apart from asking
//! the endpoint registry for the long-lived endpoint objects.

mod cluster;
mod error;
mod listener;
mod route;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use remora_proto::xds::envoy::config::{
    cluster::v3::Cluster as XdsCluster, endpoint::v3::ClusterLoadAssignment,
    listener::v3::Listener, route::v3::RouteConfiguration,
};

pub use error::CompileError;

use crate::snapshot::{Snapshot, Versions};
use crate::upstream::EndpointRegistry;

/// The listener whose routes carry the app's outbound traffic.
pub const OUTBOUND_LISTENER: &str = "outbound";

/// The accepted resources of every type, as the xDS client holds them.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    pub listeners: BTreeMap<String, Listener>,
    pub routes: BTreeMap<String, RouteConfiguration>,
    pub clusters: BTreeMap<String, XdsCluster>,
    pub endpoints: BTreeMap<String, ClusterLoadAssignment>,
    pub versions: Versions,
}

/// What the proxy must subscribe to, given the resources it holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    pub routes: Vec<String>,
    pub endpoints: Vec<String>,
}

impl Resources {
    pub fn subscriptions(&self) -> Result<Subscriptions, CompileError> {
        let mut routes = Vec::new();
        if let Some(l) = self.listeners.get(OUTBOUND_LISTENER) {
            if let listener::RouteSource::Rds(name) = listener::route_source(l)? {
                routes.push(name);
            }
        }
        let mut endpoints = Vec::new();
        for c in self.clusters.values() {
            if let Some(name) = cluster::eds_service_name(c)? {
                endpoints.push(name);
            }
        }
        endpoints.sort();
        endpoints.dedup();
        Ok(Subscriptions { routes, endpoints })
    }
}

/// Compiles every resource; any invalid one rejects the whole set (the caller NACKs
/// and keeps the previous snapshot).
pub fn compile(
    resources: &Resources,
    registry: &EndpointRegistry,
) -> Result<Snapshot, CompileError> {
    let mut clusters = HashMap::with_capacity(resources.clusters.len());
    for (name, c) in &resources.clusters {
        let compiled = cluster::compile(c, &resources.endpoints, registry)?;
        clusters.insert(Arc::from(name.as_str()), Arc::new(compiled));
    }
    for (name, cla) in &resources.endpoints {
        cluster::check_assignment(name, cla)?;
    }
    for l in resources.listeners.values() {
        listener::route_source(l)?;
    }

    let outbound = match resources.listeners.get(OUTBOUND_LISTENER) {
        None => None,
        Some(l) => match listener::route_source(l)? {
            listener::RouteSource::Inline(rc) => Some(route::compile(&rc, &clusters)?),
            listener::RouteSource::Rds(name) => resources
                .routes
                .get(&name)
                .map(|rc| route::compile(rc, &clusters))
                .transpose()?,
        },
    };
    // Route configurations nobody uses yet are still checked, so errors surface early.
    for (name, rc) in &resources.routes {
        if outbound.as_ref().is_none_or(|t| &t.name != name) {
            route::compile(rc, &clusters)?;
        }
    }

    Ok(Snapshot {
        versions: resources.versions.clone(),
        clusters,
        outbound,
    })
}

#[cfg(test)]
mod tests;
