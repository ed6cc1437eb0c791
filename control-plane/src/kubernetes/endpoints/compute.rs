//! The cluster's facts -> the mesh endpoints of every Service (pure).
//!
//! An EndpointSlice endpoint becomes a mesh endpoint of its Service when its
//! `targetRef` is a known Pod of the Service's namespace, the Service's
//! selector selects that pod (a Service without a selector selects none), the
//! pod has a proxy (`remora.io/injected`), and the endpoint's address is one
//! of the pod's IPs. It is served at that address on the proxy's inbound port,
//! with the pod's service account as identity: the slice alone proves
//! nothing, the pod and the Service do.
//!
//! Conditions, as kube-proxy reads them: a Service's `ready` endpoints are
//! used; when it has none, its `serving` and `terminating` ones (so a Service
//! whose every pod is shutting down still answers); otherwise a terminating
//! endpoint gets no new requests. A pod being deleted counts as terminating
//! even before its slice says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::facts::{Inbound, PodFacts, ServiceFacts, SliceEndpoint, SliceFacts};
use crate::ca::SpiffeId;
use crate::resources::ObjectKey;
use crate::translate::{MeshEndpoint, Origin};

/// Everything known of the cluster, by namespace and name.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    pub pods: &'a BTreeMap<ObjectKey, PodFacts>,
    pub services: &'a BTreeMap<ObjectKey, ServiceFacts>,
    pub slices: &'a BTreeMap<ObjectKey, SliceFacts>,
}

/// What the facts give: the endpoints, and the slice endpoints left out
/// with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Computed {
    /// Sorted, one per (Service, address).
    pub endpoints: Vec<MeshEndpoint>,
    pub skipped: BTreeSet<Skipped>,
}

/// A slice endpoint that is no mesh endpoint of its Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub service: ObjectKey,
    /// The pod it names (`namespace/name`), or its address when it names none.
    pub endpoint: String,
    pub reason: Reason,
}

/// Why a slice endpoint is left out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Its `targetRef` names no Pod.
    NoPod,
    /// Its pod is in another namespace than the Service.
    OtherNamespace,
    /// Its pod is not known (yet): the pod watch may lag the slice's.
    UnknownPod,
    /// Its pod has finished (`Succeeded` or `Failed`).
    Finished,
    /// Its pod has no proxy.
    NotInjected,
    /// Its pod's `remora.io/inbound-port` is not a port.
    InvalidInboundPort(String),
    /// The Service has no selector: it selects no pod.
    NoSelector,
    /// The Service's selector does not select its pod.
    NotSelected,
    /// It has no IP address.
    NoAddress,
    /// Its address is not one of its pod's IPs.
    AddressNotPods(IpAddr),
    /// Its pod's service account makes no SPIFFE id.
    InvalidIdentity(String),
}

impl Reason {
    /// Whether an operator should hear of it: a pod the watch has not
    /// delivered yet, or one that finished, is the normal course of things.
    pub fn is_warning(&self) -> bool {
        !matches!(self, Reason::UnknownPod | Reason::Finished)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoPod => write!(f, "its targetRef names no Pod"),
            Reason::OtherNamespace => write!(f, "its pod is in another namespace"),
            Reason::UnknownPod => write!(f, "its pod is not known (yet)"),
            Reason::Finished => write!(f, "its pod has finished"),
            Reason::NotInjected => write!(
                f,
                "its pod has no remora-proxy (annotation {})",
                crate::inject::INJECTED
            ),
            Reason::InvalidInboundPort(value) => write!(
                f,
                "annotation {} of its pod is `{value}`, not a port",
                super::facts::INBOUND_PORT
            ),
            Reason::NoSelector => write!(f, "the Service has no selector"),
            Reason::NotSelected => write!(f, "the Service's selector does not select its pod"),
            Reason::NoAddress => write!(f, "it has no IP address"),
            Reason::AddressNotPods(ip) => write!(f, "its address {ip} is not an IP of its pod"),
            Reason::InvalidIdentity(e) => write!(f, "{e}"),
        }
    }
}

/// A slice endpoint that may serve, and how ready it is.
struct Candidate {
    endpoint: MeshEndpoint,
    ready: bool,
    /// `serving` and `terminating`: used only when no endpoint is ready.
    serving_terminating: bool,
}

/// The mesh endpoints `cluster` gives, identities in `trust_domain`.
pub fn compute(cluster: Cluster<'_>, trust_domain: &str) -> Computed {
    let mut candidates: BTreeMap<ObjectKey, Vec<Candidate>> = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    for (slice_key, slice) in cluster.slices {
        let Some(name) = &slice.service else {
            continue;
        };
        let service_key = ObjectKey::new(slice_key.namespace.clone(), name.clone());
        // A slice of a Service not known (yet) serves nothing.
        let Some(service) = cluster.services.get(&service_key) else {
            continue;
        };
        for e in &slice.endpoints {
            match candidate(cluster, &service_key, service, e, trust_domain) {
                Ok(Some(c)) => candidates.entry(service_key.clone()).or_default().push(c),
                Ok(None) => {}
                Err(reason) => {
                    skipped.insert(Skipped {
                        service: service_key.clone(),
                        endpoint: e.pod.as_ref().map_or_else(
                            || {
                                e.address
                                    .map_or("(no address)".to_owned(), |a| a.to_string())
                            },
                            ToString::to_string,
                        ),
                        reason,
                    });
                }
            }
        }
    }
    let mut endpoints: BTreeMap<(ObjectKey, SocketAddr), MeshEndpoint> = BTreeMap::new();
    for (service, list) in candidates {
        let any_ready = list.iter().any(|c| c.ready);
        for c in list {
            let used = if any_ready {
                c.ready
            } else {
                c.serving_terminating
            };
            if used {
                // The same pod in two slices (while they are rebalanced): once.
                endpoints
                    .entry((service.clone(), c.endpoint.address))
                    .or_insert(c.endpoint);
            }
        }
    }
    Computed {
        endpoints: endpoints.into_values().collect(),
        skipped,
    }
}

/// `e` as an endpoint of `service`: `Ok(None)` when it is neither ready nor
/// serving (a pod starting or gone), `Err` when it may not serve at all.
fn candidate(
    cluster: Cluster<'_>,
    service_key: &ObjectKey,
    service: &ServiceFacts,
    e: &SliceEndpoint,
    trust_domain: &str,
) -> Result<Option<Candidate>, Reason> {
    let pod_key = e.pod.as_ref().ok_or(Reason::NoPod)?;
    if pod_key.namespace != service_key.namespace {
        return Err(Reason::OtherNamespace);
    }
    let pod = cluster.pods.get(pod_key).ok_or(Reason::UnknownPod)?;
    let port = match &pod.inbound {
        Inbound::NotInjected => return Err(Reason::NotInjected),
        Inbound::Invalid(value) => return Err(Reason::InvalidInboundPort(value.clone())),
        Inbound::Port(port) => *port,
    };
    if pod.finished {
        return Err(Reason::Finished);
    }
    let selector = service
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
        .ok_or(Reason::NoSelector)?;
    if !selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v)) {
        return Err(Reason::NotSelected);
    }
    let address = e.address.ok_or(Reason::NoAddress)?;
    if !pod.ips.contains(&address) {
        return Err(Reason::AddressNotPods(address));
    }
    let identity = SpiffeId::new(trust_domain, &pod_key.namespace, &pod.service_account)
        .map_err(|e| Reason::InvalidIdentity(e.to_string()))?;
    let c = e.conditions;
    let ready = c.ready && !pod.deleting;
    let terminating = c.terminating || pod.deleting;
    if !(ready || (c.serving && terminating)) {
        return Ok(None);
    }
    Ok(Some(Candidate {
        endpoint: MeshEndpoint {
            service: service_key.clone(),
            address: SocketAddr::new(address, port),
            node_id: format!("pod/{}/{}", pod_key.namespace, pod_key.name),
            identity: Some(identity.to_string()),
            peer: None,
            origin: Origin::Cluster,
        },
        ready,
        serving_terminating: c.serving && terminating,
    }))
}
