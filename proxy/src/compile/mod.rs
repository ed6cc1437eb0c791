//! xDS resources in, a `Snapshot` or a list of rejections out. Pure apart from asking
//! the endpoint registry for the long-lived endpoint objects.

mod cluster;
mod cluster_policy;
mod error;
mod filters;
mod inbound;
mod lb_policy;
mod listener;
mod memo;
mod metadata;
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
pub use memo::Memo;
pub use tcp::DEFAULT_IDLE_TIMEOUT as DEFAULT_TCP_IDLE_TIMEOUT;

use crate::snapshot::{Destinations, Snapshot, Versions};
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
/// form is what keeps the proxy small. Compiling decodes again only what
/// changed since the last compile (see `memo`).
#[derive(Debug, Default, Clone)]
pub struct Resources {
    pub listeners: BTreeMap<String, Any>,
    pub routes: BTreeMap<String, Any>,
    pub clusters: BTreeMap<String, Any>,
    pub endpoints: BTreeMap<String, Any>,
    pub versions: Versions,
    /// What compiling these maps made, to reuse in the next compile.
    pub memo: Memo,
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
    /// What these resources subscribe to: remembered from their compile, or
    /// worked out (decoding the listeners and every cluster).
    pub fn current_subscriptions(&self) -> Result<Subscriptions, CompileError> {
        match self.memo.subscriptions() {
            Some(subs) => Ok(subs.clone()),
            None => self.subscriptions(),
        }
    }

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
    compile_from(None, resources, registry).map(|(snapshot, _)| snapshot)
}

/// Compiles `resources` as [`compile`] does, reusing what `previous` (the
/// resources accepted before, with their memo) compiled into wherever the bytes
/// are the same; also returns the memo for `resources`. Rejects exactly what
/// [`compile`] rejects, with the same error: what is reused compiled before
/// from the same bytes.
pub fn compile_from(
    previous: Option<&Resources>,
    resources: &Resources,
    registry: &EndpointRegistry,
) -> Result<(Snapshot, Memo), CompileError> {
    let before = previous.and_then(|p| p.memo.0.as_deref().map(|m| (p, m)));
    let was = |pick: fn(&Resources) -> &BTreeMap<String, Any>| before.map(|(p, _)| pick(p));
    // Only the assignments whose bytes changed are decoded and checked here;
    // the others passed before (a cluster recompiled for another reason
    // decodes its own below).
    let mut assignments: BTreeMap<String, ClusterLoadAssignment> = BTreeMap::new();
    for (name, cla) in &resources.endpoints {
        if same(was(endpoints_of), &resources.endpoints, name) {
            continue;
        }
        let cla: ClusterLoadAssignment = decode("ClusterLoadAssignment", name, cla)?;
        cluster::check_assignment(name, &cla)?;
        assignments.insert(name.clone(), cla);
    }
    let same_outbound = same(was(listeners_of), &resources.listeners, OUTBOUND_LISTENER);
    // The outbound listener's fault filters name the clusters they apply to: each
    // cluster gets its fault when it compiles, so a request needs no lookup.
    let faults = match (before, resources.listeners.get(OUTBOUND_LISTENER)) {
        (Some((_, memo)), _) if same_outbound => memo.faults.clone(),
        (_, Some(l)) => listener::faults(&decode("Listener", OUTBOUND_LISTENER, l)?)?,
        (_, None) => listener::Faults::new(),
    };
    let mut clusters = HashMap::with_capacity(resources.clusters.len());
    let mut compiled_clusters = HashMap::with_capacity(resources.clusters.len());
    for (name, any) in &resources.clusters {
        let fault = faults
            .get(name.as_str())
            .or_else(|| faults.get(""))
            .cloned();
        if let Some((p, memo)) = before {
            if let Some(kept) = memo.cluster(p, resources, name, any, &fault) {
                let service = memo
                    .clusters
                    .get(name.as_str())
                    .and_then(|(_, s)| s.clone());
                clusters.insert(kept.name.clone(), kept.clone());
                compiled_clusters.insert(kept.name.clone(), (kept.clone(), service));
                continue;
            }
        }
        let c: XdsCluster = decode("Cluster", name, any)?;
        // Errors are left to `cluster::compile`, which reports them in its order.
        let service = cluster::eds_service_name(&c).ok().flatten();
        if let Some(service) = &service {
            if let (false, Some(cla)) = (
                assignments.contains_key(service),
                resources.endpoints.get(service),
            ) {
                let cla: ClusterLoadAssignment = decode("ClusterLoadAssignment", service, cla)?;
                assignments.insert(service.clone(), cla);
            }
        }
        let mut compiled = cluster::compile(&c, &assignments, registry)?;
        compiled.fault = fault;
        let compiled = Arc::new(compiled);
        let key: Arc<str> = Arc::from(name.as_str());
        clusters.insert(key.clone(), compiled.clone());
        compiled_clusters.insert(key, (compiled, service));
    }
    // The Service ports by address and name follow the listener and the names
    // of the clusters; the endpoints pinned for transparent mode follow the
    // clusters' endpoints.
    let same_names = before.is_some_and(|(p, _)| p.clusters.keys().eq(resources.clusters.keys()));
    let mut source = None;
    let mut ports = None;
    let mut destinations = Destinations::default();
    let mut inbound = None;
    for (name, l) in &resources.listeners {
        if name.starts_with(INBOUND_PREFIX) {
            let l: Listener = decode("Listener", name, l)?;
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
        if name == OUTBOUND_LISTENER {
            let kept = before
                .and_then(|(_, memo)| memo.outbound.as_ref())
                .filter(|_| same_outbound && same_names);
            if let Some(kept) = kept {
                // Unchanged, against clusters of the same names: only the
                // endpoints are pinned again.
                destinations = Destinations {
                    by_address: kept.destinations.by_address.clone(),
                    by_name: kept.destinations.by_name.clone(),
                    by_endpoint: tcp::pin_endpoints(&kept.chains, &clusters),
                };
                source = Some(Pending::Kept(&kept.source, l));
                ports = Some((kept.destinations.clone(), kept.chains.clone()));
                continue;
            }
            let l: Listener = decode("Listener", name, l)?;
            source = Some(Pending::New(listener::route_source(&l)?));
            let (compiled, chains) = tcp::outbound(&l, &clusters)?;
            let kept = Destinations {
                by_address: compiled.by_address.clone(),
                by_name: compiled.by_name.clone(),
                by_endpoint: HashMap::new(),
            };
            destinations = compiled;
            ports = Some((kept, chains));
            continue;
        }
        // Another listener is only checked, when it is new or changed.
        if !same(was(listeners_of), &resources.listeners, name) {
            listener::route_source(&decode("Listener", name, l)?)?;
        }
    }
    let mut outbound = None;
    let source = match source {
        None => None,
        Some(Pending::New(listener::RouteSource::Rds(name))) => Some(memo::Source::Rds(name)),
        Some(Pending::Kept(memo::Source::Rds(name), _)) => Some(memo::Source::Rds(name.clone())),
        Some(Pending::New(listener::RouteSource::Inline(rc))) => {
            let table = route::compile(&rc, &clusters, registry)?;
            outbound = Some(route::share(&table));
            Some(memo::Source::Inline(table))
        }
        Some(Pending::Kept(memo::Source::Inline(table), l)) => {
            let table = route::refresh(table, &|| inline_routes(l), &clusters, registry)?;
            outbound = Some(route::share(&table));
            Some(memo::Source::Inline(table))
        }
    };
    let wanted = match &source {
        Some(memo::Source::Rds(name)) => Some(name.as_str()),
        _ => None,
    };
    // Route configurations nobody uses yet are still checked, so errors surface early.
    let mut tables = HashMap::with_capacity(resources.routes.len());
    for (name, rc) in &resources.routes {
        let kept = before
            .filter(|_| same(was(routes_of), &resources.routes, name))
            .and_then(|(_, memo)| memo.routes.get(name));
        let table = match kept {
            Some(kept) => route::refresh(
                kept,
                &|| decode::<RouteConfiguration>("RouteConfiguration", name, rc),
                &clusters,
                registry,
            )?,
            None => route::compile(
                &decode("RouteConfiguration", name, rc)?,
                &clusters,
                registry,
            )?,
        };
        if wanted == Some(name.as_str()) {
            outbound = Some(route::share(&table));
        }
        tables.insert(name.clone(), table);
    }
    let memo = memo::Compiled {
        clusters: compiled_clusters,
        faults,
        outbound: source
            .zip(ports)
            .map(|(source, (destinations, chains))| memo::Outbound {
                source,
                destinations,
                chains,
            }),
        routes: tables,
        subscriptions: None,
    };
    let snapshot = Snapshot {
        versions: resources.versions.clone(),
        clusters,
        outbound,
        inbound,
        destinations,
    };
    Ok((snapshot, Memo(Some(Arc::new(memo)))))
}

/// The outbound listener's route source, found while its listeners are read
/// and compiled after them (so errors come in the order they always did).
enum Pending<'a> {
    New(listener::RouteSource),
    /// Unchanged since the last compile; the listener's bytes, to decode its
    /// inline routes only if a virtual host must compile again.
    Kept(&'a memo::Source, &'a Any),
}

/// The inline route configuration of the outbound listener.
fn inline_routes(l: &Any) -> Result<RouteConfiguration, CompileError> {
    let l: Listener = decode("Listener", OUTBOUND_LISTENER, l)?;
    match listener::route_source(&l)? {
        listener::RouteSource::Inline(rc) => Ok(*rc),
        listener::RouteSource::Rds(_) => Err(CompileError::new(
            "Listener",
            OUTBOUND_LISTENER,
            "",
            "its routes are no longer inline though its bytes are the same",
        )),
    }
}

type Map = BTreeMap<String, Any>;

fn endpoints_of(r: &Resources) -> &Map {
    &r.endpoints
}

fn listeners_of(r: &Resources) -> &Map {
    &r.listeners
}

fn routes_of(r: &Resources) -> &Map {
    &r.routes
}

/// Whether `name` is the same bytes (or as absent) in `now` as `before`;
/// false when there was no compile before.
fn same(before: Option<&Map>, now: &Map, name: &str) -> bool {
    before.is_some_and(|b| b.get(name) == now.get(name))
}

#[cfg(test)]
mod inbound_tests;
#[cfg(test)]
mod tests;
