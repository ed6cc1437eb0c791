//! What the last compile made, kept beside the resources it was made from, so
//! the next compile reuses every part whose inputs are the same bytes.
//!
//! An endpoint update (EDS, state of the world) carries every assignment the
//! proxy holds though one changed. Compiling all of them again cost the proxy
//! as much as its first config; with the memo it compiles the clusters whose
//! assignment (or Cluster, or fault) changed, the virtual hosts that send to
//! them, and pins the endpoints for transparent mode again. Everything else is
//! the same object in the next snapshot, so the state a cluster or endpoint
//! carries is exactly what a full compile would have found in the registry.
//!
//! Not for: deciding what is valid. A part is reused only when the bytes it
//! came from are those of the previous, accepted resources, which compiled;
//! anything else is compiled (and checked) as if there were no memo.

use std::collections::HashMap;
use std::sync::Arc;

use remora_proto::xds::google::protobuf::Any;

use super::listener::Faults;
use super::{Resources, Subscriptions};
use crate::resilience::fault::Fault;
use crate::snapshot::{Destination, Destinations, RouteTable};
use crate::upstream::Cluster;

/// Empty until a response is applied (`xds::apply_response`); then what that
/// compile made from the resources it sits beside. Whoever changes the
/// resources' maps without compiling must reset it (`Memo::default()`).
#[derive(Debug, Default, Clone)]
pub struct Memo(pub(super) Option<Arc<Compiled>>);

impl Memo {
    /// What the resources it sits beside subscribe to, if known.
    pub fn subscriptions(&self) -> Option<&Subscriptions> {
        self.0.as_ref()?.subscriptions.as_ref()
    }

    /// Records what the resources subscribe to (the caller computed it).
    pub(crate) fn with_subscriptions(self, subscriptions: Subscriptions) -> Self {
        let Some(compiled) = self.0 else {
            return Memo(None);
        };
        // A fresh memo has one owner: this moves it rather than copying.
        let mut compiled = Arc::try_unwrap(compiled).unwrap_or_else(|shared| shared.share());
        compiled.subscriptions = Some(subscriptions);
        Memo(Some(Arc::new(compiled)))
    }
}

#[derive(Debug, Default)]
pub(super) struct Compiled {
    /// Each cluster as compiled, and the EDS name its endpoints came from.
    pub clusters: HashMap<Arc<str>, (Arc<Cluster>, Option<String>)>,
    /// The outbound listener's fault filters.
    pub faults: Faults,
    /// What the outbound listener compiled into, if there is one.
    pub outbound: Option<Outbound>,
    /// Every RouteConfiguration as compiled, by name.
    pub routes: HashMap<String, RouteTable>,
    pub subscriptions: Option<Subscriptions>,
}

impl Compiled {
    fn share(&self) -> Compiled {
        Compiled {
            clusters: self.clusters.clone(),
            faults: self.faults.clone(),
            outbound: self.outbound.as_ref().map(Outbound::share),
            routes: self
                .routes
                .iter()
                .map(|(k, t)| (k.clone(), super::route::share(t)))
                .collect(),
            subscriptions: self.subscriptions.clone(),
        }
    }

    /// The cluster compiled before from the same Cluster bytes, the same
    /// assignment bytes and the same fault, if there is one.
    pub fn cluster(
        &self,
        before: &Resources,
        now: &Resources,
        name: &str,
        any: &Any,
        fault: &Option<Arc<Fault>>,
    ) -> Option<&Arc<Cluster>> {
        if before.clusters.get(name) != Some(any) {
            return None;
        }
        let (cluster, service) = self.clusters.get(name)?;
        if let Some(service) = service {
            if before.endpoints.get(service) != now.endpoints.get(service) {
                return None;
            }
        }
        let same_fault = match (&cluster.fault, fault) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_fault.then_some(cluster)
    }
}

/// The outbound listener, compiled.
#[derive(Debug)]
pub(super) struct Outbound {
    pub source: Source,
    /// Its destinations by address and name (`by_endpoint` is left empty: it
    /// is pinned again from `chains` whenever a cluster changes).
    pub destinations: Destinations,
    pub chains: Vec<Arc<Destination>>,
}

impl Outbound {
    fn share(&self) -> Outbound {
        Outbound {
            source: match &self.source {
                Source::Rds(name) => Source::Rds(name.clone()),
                Source::Inline(table) => Source::Inline(super::route::share(table)),
            },
            destinations: self.destinations.clone(),
            chains: self.chains.clone(),
        }
    }
}

/// Where the outbound routes come from.
#[derive(Debug)]
pub(super) enum Source {
    Rds(String),
    /// The table the listener's own route configuration compiled into.
    Inline(RouteTable),
}
