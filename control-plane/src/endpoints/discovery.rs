//! The endpoint set and what it is made of: proxies' registrations and the
//! cluster's feed.

use std::collections::{BTreeMap, BTreeSet};
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
            .field("fed", &state.feed.endpoints.len())
            .field("leaving", &state.leaving.len())
            .finish()
    }
}

/// What a cluster says serves: the endpoints, and how to find a pod's
/// endpoints by any of its IPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feed {
    pub endpoints: Vec<MeshEndpoint>,
    /// A dual-stack pod's other IPs -> the IP its endpoints use: a proxy that
    /// leaves is found by whichever its xDS connection comes from.
    pub aliases: BTreeMap<IpAddr, IpAddr>,
}

impl From<Vec<MeshEndpoint>> for Feed {
    fn from(endpoints: Vec<MeshEndpoint>) -> Self {
        Feed {
            endpoints,
            aliases: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Registrations {
    next_id: u64,
    /// In registration order: a later registration of the same address wins.
    by_id: BTreeMap<u64, Entry>,
    /// The cluster's endpoints, replaced whole by each feed.
    feed: Feed,
    /// Proxies that said they are leaving while the cluster still lists
    /// their pod (see [`Discovery::withdraw`]), by the IP they connect from
    /// and the identity they prove; the count of their streams (a proxy may
    /// reconnect while it leaves).
    leaving: BTreeMap<(IpAddr, String), usize>,
}

#[derive(Debug)]
struct Entry {
    endpoint: MeshEndpoint,
    /// Withdrawn: the proxy is leaving and must get no new requests.
    draining: bool,
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

    /// Replaces the cluster's endpoints with `feed` (a whole set, as computed
    /// from the cluster's facts) and publishes if they changed.
    pub fn replace_feed(&self, feed: impl Into<Feed>) {
        let mut feed = feed.into();
        feed.endpoints.sort();
        let mut registrations = self.lock();
        if registrations.feed == feed {
            return;
        }
        registrations.feed = feed;
        self.publish(&registrations);
    }

    /// A proxy at `ip` proving `identity` is leaving: its pod's fed endpoints
    /// are withdrawn until the returned guard is dropped (its stream ends),
    /// ahead of the cluster marking the pod terminating.
    pub fn withdraw(self: &Arc<Self>, ip: IpAddr, identity: String) -> Withdrawal {
        let key = (canonical(ip), identity);
        let mut registrations = self.lock();
        let first = {
            let count = registrations.leaving.entry(key.clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        // Another stream of the same proxy withdrew it already: no change.
        if first {
            self.publish(&registrations);
        }
        Withdrawal {
            discovery: Arc::clone(self),
            key,
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
/// proxies: one lookup per fed endpoint, by its IP and identity.
fn current(registrations: &Registrations) -> Vec<MeshEndpoint> {
    let mut latest: BTreeMap<(&ObjectKey, SocketAddr), Option<&MeshEndpoint>> = BTreeMap::new();
    for entry in registrations.by_id.values() {
        let e = &entry.endpoint;
        latest.insert((&e.service, e.address), (!entry.draining).then_some(e));
    }
    let feed = &registrations.feed;
    // Leaving pods by the IP their endpoints use (a dual-stack pod's proxy
    // may connect from its other one).
    let leaving: BTreeSet<(IpAddr, &str)> = registrations
        .leaving
        .keys()
        .map(|(ip, identity)| (*feed.aliases.get(ip).unwrap_or(ip), identity.as_str()))
        .collect();
    for e in &feed.endpoints {
        let gone = !leaving.is_empty()
            && e.origin == Origin::Cluster
            && e.identity
                .as_deref()
                .is_some_and(|id| leaving.contains(&(canonical(e.address.ip()), id)));
        latest.insert((&e.service, e.address), (!gone).then_some(e));
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

/// A leaving proxy's withdrawal of its pod; dropping it ends the withdrawal
/// (once no other stream of the same proxy still withdraws it).
#[derive(Debug)]
pub struct Withdrawal {
    discovery: Arc<Discovery>,
    key: (IpAddr, String),
}

impl Drop for Withdrawal {
    fn drop(&mut self) {
        let mut registrations = self.discovery.lock();
        let last = match registrations.leaving.get_mut(&self.key) {
            Some(count) => {
                *count = count.saturating_sub(1);
                *count == 0
            }
            None => false,
        };
        if last {
            registrations.leaving.remove(&self.key);
            self.discovery.publish(&registrations);
        }
    }
}
