//! The compact facts kept of each watched object: what endpoint computation
//! needs and nothing more. A Pod's spec and status are read once as they
//! arrive and dropped, and a pod without a proxy keeps only its name, so
//! memory grows with the mesh, not with the cluster.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::inject::INJECTED;
use crate::resources::{EndpointAuthority, ObjectKey};

/// The port of the injected proxy's inbound listener, when not the default.
pub const INBOUND_PORT: &str = "remora.io/inbound-port";
/// The injected proxy's inbound listener (see docs/architecture.md).
pub const DEFAULT_INBOUND_PORT: u16 = 7002;
// The label that names an EndpointSlice's Service: defined beside the
// source's kinds, whose slice watch reads it too.
pub use super::super::kinds::SERVICE_NAME_LABEL;
/// The account of a pod that names none.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What is known of one Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    /// Where its proxy listens for mesh traffic; [`Inbound::NotInjected`]
    /// for a pod without one (then nothing else is kept).
    pub inbound: Inbound,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub ips: Vec<IpAddr>,
    /// `Succeeded` or `Failed`: it serves nothing, and its IP may already be
    /// another pod's.
    pub finished: bool,
    /// Its deletion has begun (`deletionTimestamp` set): it is terminating,
    /// whatever a slice not updated yet says.
    pub deleting: bool,
}

/// A pod's proxy, as its annotations say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// No `remora.io/injected` annotation: no proxy.
    NotInjected,
    /// Injected; its inbound listener's port.
    Port(u16),
    /// Injected, but `remora.io/inbound-port` is not a port: the value.
    Invalid(String),
}

/// What is known of one Service: its selector (`None`: it has none, and
/// selects no pod), and the accounts its pods must run as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    pub selector: Option<BTreeMap<String, String>>,
    /// `remora.io/service-accounts`, when written: a selected pod running as
    /// another account does not serve (`None`: any account). Read as
    /// validation reads it; validation reports a malformed list.
    pub service_accounts: Option<Vec<String>>,
}

/// What is known of one EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceFacts {
    /// The Service (of the slice's namespace) it lists endpoints of; `None`
    /// without the `kubernetes.io/service-name` label.
    pub service: Option<String>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// Its first address (the only one kube-proxy looks at); `None` when it
    /// is not an IP.
    pub address: Option<IpAddr>,
    /// The Pod its `targetRef` names; `None` when it names no Pod.
    pub pod: Option<ObjectKey>,
    pub conditions: Conditions,
}

/// An endpoint's conditions, the API's defaults applied (an absent `ready`
/// or `serving` is true, an absent `terminating` false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            ready: true,
            serving: true,
            terminating: false,
        }
    }
}

/// An object's namespace and name; `None` for one that lacks either.
fn key(meta: &ObjectMeta) -> Option<ObjectKey> {
    Some(ObjectKey::new(meta.namespace.clone()?, meta.name.clone()?))
}

/// The facts of `pod`.
pub fn pod(pod: &Pod) -> Option<(ObjectKey, PodFacts)> {
    let key = key(&pod.metadata)?;
    let annotations = pod.metadata.annotations.as_ref();
    if !annotations.is_some_and(|a| a.contains_key(INJECTED)) {
        let facts = PodFacts {
            inbound: Inbound::NotInjected,
            labels: BTreeMap::new(),
            service_account: String::new(),
            ips: Vec::new(),
            finished: false,
            deleting: false,
        };
        return Some((key, facts));
    }
    let inbound = match annotations.and_then(|a| a.get(INBOUND_PORT)) {
        None => Inbound::Port(DEFAULT_INBOUND_PORT),
        Some(value) => match value.trim().parse::<u16>() {
            Ok(port) if port != 0 => Inbound::Port(port),
            _ => Inbound::Invalid(value.clone()),
        },
    };
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    // `podIP` is `podIPs[0]` when both are set; an API server (or a test)
    // that sets only `podIP` still gives the pod its address.
    if let Some(ip) = status
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|sa| !sa.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned());
    let phase = status.and_then(|s| s.phase.as_deref());
    let facts = PodFacts {
        inbound,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        service_account,
        ips,
        finished: matches!(phase, Some("Succeeded" | "Failed")),
        deleting: pod.metadata.deletion_timestamp.is_some(),
    };
    Some((key, facts))
}

/// The facts of `service`.
pub fn service(service: &Service) -> Option<(ObjectKey, ServiceFacts)> {
    let key = key(&service.metadata)?;
    let selector = service.spec.as_ref().and_then(|s| s.selector.clone());
    let service_accounts = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EndpointAuthority::SERVICE_ACCOUNTS))
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect()
        });
    Some((
        key,
        ServiceFacts {
            selector,
            service_accounts,
        },
    ))
}

/// The facts of `slice`.
pub fn slice(slice: &EndpointSlice) -> Option<(ObjectKey, SliceFacts)> {
    let key = key(&slice.metadata)?;
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned();
    let endpoints = slice
        .endpoints
        .iter()
        .map(|e| {
            let pod = e.target_ref.as_ref().and_then(|r| {
                if r.kind.as_deref() != Some("Pod") {
                    return None;
                }
                let namespace = r.namespace.clone().unwrap_or_else(|| key.namespace.clone());
                Some(ObjectKey::new(namespace, r.name.clone()?))
            });
            let c = e.conditions.as_ref();
            let defaults = Conditions::default();
            SliceEndpoint {
                address: e.addresses.first().and_then(|a| a.parse().ok()),
                pod,
                conditions: Conditions {
                    ready: c.and_then(|c| c.ready).unwrap_or(defaults.ready),
                    serving: c.and_then(|c| c.serving).unwrap_or(defaults.serving),
                    terminating: c
                        .and_then(|c| c.terminating)
                        .unwrap_or(defaults.terminating),
                },
            }
        })
        .collect();
    Some((key, SliceFacts { service, endpoints }))
}
