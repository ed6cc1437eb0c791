//! The endpoint set and what it is made of: proxies' registrations and the
//! cluster's feed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::authority::canonical;
use crate::resources::ObjectKey;
use crate::translate::{MeshEndpoint, Origin};

/// Where the endpoint set goes on every change (the xDS snapshot channel).
type Publish = Box<dyn Fn(Vec<MeshEndpoint>) + Send + Sync>;

/// The endpoints of every Service: self-registered proxies, and the set a
/// cluster feeds (EndpointSlices). Each change publishes the whole set, under
/// the lock, so sets are published in the order they were made.
pub struct Discovery {
    registrations: Mutex<Registrations>,
    publish: Publish,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Discovery")
            .field("registrations", &state.by_id.len())
            .field("fed", &state.feed.len())
            .field("leaving", &state.leaving.len())
            .finish()
    }
}

#[derive(Debug, Default)]
struct Registrations {
    next_id: u64,
    /// In registration order: a later registration of the same address wins.
    by_id: BTreeMap<u64, Entry>,
    /// The cluster's endpoints, replaced whole by each feed.
    feed: Vec<MeshEndpoint>,
    /// Proxies that said they are leaving while the cluster still lists
    /// their pod (see [`Discovery::withdraw`]).
    leaving: BTreeMap<u64, Leaving>,
}

#[derive(Debug)]
struct Entry {
    endpoint: MeshEndpoint,
    /// Withdrawn: the proxy is leaving and must get no new requests.
    draining: bool,
}

/// A leaving proxy, as its xDS connection proves it: the IP it connects from
/// and the identity its certificate carries.
#[derive(Debug)]
struct Leaving {
    ip: IpAddr,
    identity: String,
}

impl Leaving {
    /// Whether `e` is this proxy's pod: a fed endpoint at its IP with its
    /// identity. Both must match, so a proxy withdraws nobody else's pod.
    fn is(&self, e: &MeshEndpoint) -> bool {
        e.origin == Origin::Cluster
            && canonical(e.address.ip()) == self.ip
            && e.identity.as_deref() == Some(self.identity.as_str())
    }
}

impl Discovery {
    /// A discovery that hands every new endpoint set to `publish`.
    pub fn new(publish: impl Fn(Vec<MeshEndpoint>) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Discovery {
            registrations: Mutex::default(),
            publish: Box::new(publish),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registrations> {
        self.registrations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `endpoint` until the returned guard is dropped. A `draining`
    /// registration (a proxy that reconnects while it leaves) is never in the
    /// set.
    pub fn register(self: &Arc<Self>, endpoint: MeshEndpoint, draining: bool) -> Registration {
        let mut registrations = self.lock();
        let id = registrations.next_id;
        registrations.next_id += 1;
        registrations.by_id.insert(id, Entry { endpoint, draining });
        self.publish(&registrations);
        Registration {
            discovery: Arc::clone(self),
            id,
        }
    }

    /// Replaces the cluster's endpoints with `endpoints` (a whole set, as
    /// computed from the cluster's facts) and publishes if they changed.
    pub fn replace_feed(&self, mut endpoints: Vec<MeshEndpoint>) {
        endpoints.sort();
        let mut registrations = self.lock();
        if registrations.feed == endpoints {
            return;
        }
        registrations.feed = endpoints;
        self.publish(&registrations);
    }

    /// A proxy at `ip` proving `identity` is leaving: its pod's fed endpoints
    /// are withdrawn until the returned guard is dropped (its stream ends),
    /// ahead of the cluster marking the pod terminating.
    pub fn withdraw(self: &Arc<Self>, ip: IpAddr, identity: String) -> Withdrawal {
        let mut registrations = self.lock();
        let id = registrations.next_id;
        registrations.next_id += 1;
        registrations.leaving.insert(
            id,
            Leaving {
                ip: canonical(ip),
                identity,
            },
        );
        self.publish(&registrations);
        Withdrawal {
            discovery: Arc::clone(self),
            id,
        }
    }

    /// The endpoints in force, sorted.
    pub fn endpoints(&self) -> Vec<MeshEndpoint> {
        current(&self.lock())
    }

    fn publish(&self, registrations: &Registrations) {
        (self.publish)(current(registrations));
    }
}

/// One endpoint per (Service, address): the newest registration decides, so a
/// proxy that reconnects before its old stream is gone is not counted twice,
/// and a newest one that is draining takes the address out. The cluster's
/// feed goes over registrations (its facts are the authority where it is
/// used; a cluster's proxies do not register), less the pods of leaving
/// proxies.
fn current(registrations: &Registrations) -> Vec<MeshEndpoint> {
    let mut latest: BTreeMap<(&ObjectKey, SocketAddr), Option<&MeshEndpoint>> = BTreeMap::new();
    for entry in registrations.by_id.values() {
        let e = &entry.endpoint;
        latest.insert((&e.service, e.address), (!entry.draining).then_some(e));
    }
    for e in &registrations.feed {
        let leaving = registrations.leaving.values().any(|l| l.is(e));
        latest.insert((&e.service, e.address), (!leaving).then_some(e));
    }
    let mut set: Vec<MeshEndpoint> = latest.into_values().flatten().cloned().collect();
    set.sort();
    set
}

/// One registered endpoint; dropping it removes the endpoint.
#[derive(Debug)]
pub struct Registration {
    discovery: Arc<Discovery>,
    id: u64,
}

impl Registration {
    /// Withdraws the endpoint while its proxy stays connected (it is leaving
    /// and finishes what is in flight). Returns whether it was serving until
    /// now; a second call does nothing.
    pub fn drain(&self) -> bool {
        let mut registrations = self.discovery.lock();
        let Some(entry) = registrations.by_id.get_mut(&self.id) else {
            return false;
        };
        if entry.draining {
            return false;
        }
        entry.draining = true;
        self.discovery.publish(&registrations);
        true
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registrations = self.discovery.lock();
        registrations.by_id.remove(&self.id);
        self.discovery.publish(&registrations);
    }
}

/// A leaving proxy's withdrawal of its pod; dropping it ends the withdrawal.
#[derive(Debug)]
pub struct Withdrawal {
    discovery: Arc<Discovery>,
    id: u64,
}

impl Drop for Withdrawal {
    fn drop(&mut self) {
        let mut registrations = self.discovery.lock();
        registrations.leaving.remove(&self.id);
        self.discovery.publish(&registrations);
    }
}
