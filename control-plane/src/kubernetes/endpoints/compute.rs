//! The cluster's facts -> the mesh endpoints of every Service (pure).
//!
//! An EndpointSlice endpoint becomes a mesh endpoint of its Service when its
//! `targetRef` is a known Pod of the Service's namespace, the Service's
//! selector selects that pod (a Service without a selector selects none), the
//! pod has a proxy (`remora.io/injected`), and the endpoint's address is one
//! of the pod's IPs. It is served at that address on the proxy's inbound port,
//! with the pod's service account as identity: the slice alone proves
//! nothing, the pod and the Service do. A Service that lists its accounts
//! (`remora.io/service-accounts`) is served only by pods running as one of
//! them: its selector alone is labels anyone who may create pods can set.
//!
//! One endpoint per (Service, pod): a dual-stack pod is in one slice per IP
//! family, and serves at the family of its first IP.
//!
//! Endpoints that are no mesh endpoints because their pod has no proxy (or
//! names no pod of the namespace) are told about only for Services that have
//! pods with a proxy: most of a cluster is not in the mesh.
//!
//! Conditions, as kube-proxy reads them: a Service's `ready` endpoints are
//! used; when it has none, its `serving` and `terminating` ones (so a Service
//! whose every pod is shutting down still answers); otherwise a terminating
//! endpoint gets no new requests. A pod being deleted counts as terminating
//! even before its slice says so.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::facts::{Inbound, PodFacts, ServiceFacts, SliceEndpoint, SliceFacts};
use crate::authority::canonical;
use crate::ca::SpiffeId;
use crate::resources::{EndpointAuthority, ObjectKey};
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
    /// Sorted, one per (Service, pod).
    pub endpoints: Vec<MeshEndpoint>,
    /// Each served pod's other IPs -> the IP its endpoints use (a dual-stack
    /// pod): a proxy that leaves is found by whichever it connects from.
    pub aliases: BTreeMap<IpAddr, IpAddr>,
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
    /// Its pod runs as `account`, which the Service's explicit
    /// `remora.io/service-accounts` (`listed`) does not name.
    AccountNotListed {
        account: String,
        listed: Vec<String>,
    },
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

    /// Whether it is told only for a Service that has pods with a proxy: in
    /// a cluster of thousands of pods, most Services are not in the mesh
    /// (and `default/kubernetes` lists no pods), and their endpoints being
    /// no mesh endpoints is no news.
    fn only_for_meshed_services(&self) -> bool {
        matches!(
            self,
            Reason::NoPod | Reason::OtherNamespace | Reason::NotInjected
        )
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
            Reason::AccountNotListed { account, listed } => write!(
                f,
                "its pod runs as service account {account}, which annotation {} of the Service does not list (it lists {})",
                EndpointAuthority::SERVICE_ACCOUNTS,
                if listed.is_empty() {
                    "none".to_owned()
                } else {
                    listed.join(", ")
                }
            ),
            Reason::NoAddress => write!(f, "it has no IP address"),
            Reason::AddressNotPods(ip) => write!(f, "its address {ip} is not an IP of its pod"),
            Reason::InvalidIdentity(e) => write!(f, "{e}"),
        }
    }
}

/// A slice endpoint that may serve, and how ready it is.
struct Candidate {
    endpoint: MeshEndpoint,
    /// Its pod.
    pod: ObjectKey,
    /// Its address is of the family of the pod's first IP: of a dual-stack
    /// pod listed in a slice per family, this one is used.
    preferred: bool,
    ready: bool,
    /// `serving` and `terminating`: used only when no endpoint is ready.
    serving_terminating: bool,
}

/// The mesh endpoints `cluster` gives, identities in `trust_domain`.
pub fn compute(cluster: Cluster<'_>, trust_domain: &str) -> Computed {
    let mut candidates: BTreeMap<ObjectKey, Vec<Candidate>> = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    // Skips told only if their Service turns out to have a pod with a proxy.
    let mut unmeshed: BTreeMap<ObjectKey, Vec<Skipped>> = BTreeMap::new();
    let mut meshed: BTreeSet<ObjectKey> = BTreeSet::new();
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
            if has_proxy(cluster, &service_key, e) {
                meshed.insert(service_key.clone());
            }
            match candidate(cluster, &service_key, service, e, trust_domain) {
                Ok(Some(c)) => candidates.entry(service_key.clone()).or_default().push(c),
                Ok(None) => {}
                Err(reason) => {
                    let s = Skipped {
                        service: service_key.clone(),
                        endpoint: e.pod.as_ref().map_or_else(
                            || {
                                e.address
                                    .map_or("(no address)".to_owned(), |a| a.to_string())
                            },
                            ToString::to_string,
                        ),
                        reason,
                    };
                    if s.reason.only_for_meshed_services() {
                        unmeshed.entry(service_key.clone()).or_default().push(s);
                    } else {
                        skipped.insert(s);
                    }
                }
            }
        }
    }
    for (service, list) in unmeshed {
        if meshed.contains(&service) {
            skipped.extend(list);
        }
    }
    let mut chosen: BTreeMap<(ObjectKey, ObjectKey), Candidate> = BTreeMap::new();
    for (service, list) in candidates {
        let any_ready = list.iter().any(|c| c.ready);
        for c in list {
            let used = if any_ready {
                c.ready
            } else {
                c.serving_terminating
            };
            if !used {
                continue;
            }
            // A pod in two slices (one per IP family, or two while they are
            // rebalanced) is one endpoint, at the family of its first IP.
            match chosen.entry((service.clone(), c.pod.clone())) {
                Entry::Vacant(v) => {
                    v.insert(c);
                }
                Entry::Occupied(mut o) => {
                    if c.preferred && !o.get().preferred {
                        o.insert(c);
                    }
                }
            }
        }
    }
    let mut aliases = BTreeMap::new();
    for c in chosen.values() {
        let used = c.endpoint.address.ip();
        let ips = cluster.pods.get(&c.pod).map(|p| p.ips.as_slice());
        for ip in ips.unwrap_or_default() {
            if *ip != used {
                aliases.insert(canonical(*ip), canonical(used));
            }
        }
    }
    let mut endpoints: Vec<MeshEndpoint> = chosen.into_values().map(|c| c.endpoint).collect();
    endpoints.sort();
    Computed {
        endpoints,
        aliases,
        skipped,
    }
}

/// Whether `e` names a pod of the Service's namespace that has a proxy.
fn has_proxy(cluster: Cluster<'_>, service_key: &ObjectKey, e: &SliceEndpoint) -> bool {
    e.pod
        .as_ref()
        .filter(|p| p.namespace == service_key.namespace)
        .and_then(|p| cluster.pods.get(p))
        .is_some_and(|p| p.inbound != Inbound::NotInjected)
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
    // A selector is only labels, which anyone who may create pods here can
    // set: explicit accounts bind the pods too (translation checks it again,
    // see `crate::authority`; here it is told about).
    if let Some(listed) = &service.service_accounts {
        if !listed.contains(&pod.service_account) {
            return Err(Reason::AccountNotListed {
                account: pod.service_account.clone(),
                listed: listed.clone(),
            });
        }
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
    let preferred = pod
        .ips
        .first()
        .is_some_and(|first| first.is_ipv4() == address.is_ipv4());
    Ok(Some(Candidate {
        endpoint: MeshEndpoint {
            service: service_key.clone(),
            address: SocketAddr::new(address, port),
            node_id: format!("pod/{}/{}", pod_key.namespace, pod_key.name),
            identity: Some(identity.to_string()),
            peer: None,
            origin: Origin::Cluster,
        },
        pod: pod_key.clone(),
        preferred,
        ready,
        serving_terminating: c.serving && terminating,
    }))
}
