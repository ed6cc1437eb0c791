//! xDS resources in, a `Snapshot` or a list of rejections out. Pure apart from asking
//! the endpoint registry for the long-lived endpoint objects.

mod cluster;
mod cluster_policy;
mod error;
mod filters;
mod inbound;
mod lb_policy;
mod listener;
mod origin;
mod policy;
mod route;
mod tcp;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use remora_proto::prost::Message;
use remora_proto::xds::envoy::config::{
    cluster::v3::Cluster as XdsCluster, endpoint::v3::ClusterLoadAssignment,
    listener::v3::Listener, route::v3::RouteConfiguration,
};
use remora_proto::xds::google::protobuf::Any;

pub use error::CompileError;
pub use tcp::DEFAULT_IDLE_TIMEOUT as DEFAULT_TCP_IDLE_TIMEOUT;

use crate::snapshot::{Snapshot, Versions};
use crate::upstream::EndpointRegistry;

/// The listener whose routes carry the app's outbound traffic.
pub const OUTBOUND_LISTENER: &str = "outbound";
/// What the name of the inbound listener starts with.
const INBOUND_PREFIX: &str = "inbound|";

/// The inbound listener of a proxy that fronts `service` in `namespace`.
pub fn inbound_listener(service: &str, namespace: &str) -> String {
    format!("{INBOUND_PREFIX}{service}.{namespace}.svc.cluster.local")
}

/// The accepted resources of every type, as the xDS client holds them: encoded, as
/// they arrived (checked to decode). A decoded Envoy `Cluster` or `Listener` is
/// several kilobytes of mostly empty fields; with hundreds of services the encoded
/// form is what keeps the proxy small. Compiling decodes them again, which costs
/// microseconds per resource and happens only when config changes.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    pub listeners: BTreeMap<String, Any>,
    pub routes: BTreeMap<String, Any>,
    pub clusters: BTreeMap<String, Any>,
    pub endpoints: BTreeMap<String, Any>,
    pub versions: Versions,
}

/// An xDS duration, checked: a negative one or out-of-range nanos is the error
/// message `(field, message)` the caller reports.
pub(crate) fn duration(
    d: &remora_proto::xds::google::protobuf::Duration,
    field: &str,
) -> Result<std::time::Duration, (String, String)> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err((field.to_owned(), "not a valid non-negative duration".into()));
    }
    Ok(std::time::Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Decodes one held resource; `kind` names it in the error.
pub fn decode<T: Message + Default>(
    kind: &'static str,
    name: &str,
    any: &Any,
) -> Result<T, CompileError> {
    T::decode(any.value.as_slice())
        .map_err(|e| CompileError::new(kind, name, "", format!("cannot decode: {e}")))
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
            let l: Listener = decode("Listener", OUTBOUND_LISTENER, l)?;
            if let listener::RouteSource::Rds(name) = listener::route_source(&l)? {
                routes.push(name);
            }
        }
        let mut endpoints = Vec::new();
        for (name, c) in &self.clusters {
            let c: XdsCluster = decode("Cluster", name, c)?;
            if let Some(name) = cluster::eds_service_name(&c)? {
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
    let mut assignments = BTreeMap::new();
    for (name, cla) in &resources.endpoints {
        let cla: ClusterLoadAssignment = decode("ClusterLoadAssignment", name, cla)?;
        cluster::check_assignment(name, &cla)?;
        assignments.insert(name.clone(), cla);
    }
    // The outbound listener's fault filters name the clusters they apply to: each
    // cluster gets its fault when it compiles, so a request needs no lookup.
    let faults = match resources.listeners.get(OUTBOUND_LISTENER) {
        Some(l) => listener::faults(&decode("Listener", OUTBOUND_LISTENER, l)?)?,
        None => listener::Faults::new(),
    };
    let mut clusters = HashMap::with_capacity(resources.clusters.len());
    for (name, c) in &resources.clusters {
        let c: XdsCluster = decode("Cluster", name, c)?;
        let mut compiled = cluster::compile(&c, &assignments, registry)?;
        compiled.fault = faults
            .get(name.as_str())
            .or_else(|| faults.get(""))
            .cloned();
        clusters.insert(Arc::from(name.as_str()), Arc::new(compiled));
    }
    let mut outbound_source = None;
    let mut destinations = Default::default();
    let mut inbound = None;
    for (name, l) in &resources.listeners {
        let l: Listener = decode("Listener", name, l)?;
        if name.starts_with(INBOUND_PREFIX) {
            let policy = inbound::compile(&l, registry)?;
            if let Some(other) = inbound.replace(policy) {
                return Err(CompileError::new(
                    "Listener",
                    name,
                    "",
                    format!("a second inbound listener (after \"{}\")", other.name),
                ));
            }
            continue;
        }
        let source = listener::route_source(&l)?;
        if name == OUTBOUND_LISTENER {
            outbound_source = Some(source);
            destinations = tcp::outbound(&l, &clusters)?;
        }
    }
    let mut outbound = None;
    let wanted = match &outbound_source {
        Some(listener::RouteSource::Inline(rc)) => {
            outbound = Some(route::compile(rc, &clusters, registry)?);
            None
        }
        Some(listener::RouteSource::Rds(name)) => Some(name.as_str()),
        None => None,
    };
    // Route configurations nobody uses yet are still checked, so errors surface early.
    for (name, rc) in &resources.routes {
        let rc: RouteConfiguration = decode("RouteConfiguration", name, rc)?;
        let table = route::compile(&rc, &clusters, registry)?;
        if wanted == Some(name.as_str()) {
            outbound = Some(table);
        }
    }

    Ok(Snapshot {
        versions: resources.versions.clone(),
        clusters,
        outbound,
        inbound,
        destinations,
    })
}

#[cfg(test)]
mod inbound_tests;
#[cfg(test)]
mod tests;
