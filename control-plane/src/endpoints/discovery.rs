//! The endpoint set and the registrations it is made of.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::resources::ObjectKey;
use crate::translate::MeshEndpoint;

/// Where the endpoint set goes on every change (the xDS snapshot channel).
type Publish = Box<dyn Fn(Vec<MeshEndpoint>) + Send + Sync>;

/// The self-registered endpoints of every Service. Each change publishes the
/// whole set, under the lock, so sets are published in the order they were made.
pub struct Discovery {
    registrations: Mutex<Registrations>,
    publish: Publish,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("registrations", &self.lock().by_id.len())
            .finish()
    }
}

#[derive(Debug, Default)]
struct Registrations {
    next_id: u64,
    /// In registration order: a later registration of the same address wins.
    by_id: BTreeMap<u64, Entry>,
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
/// and a newest one that is draining takes the address out.
fn current(registrations: &Registrations) -> Vec<MeshEndpoint> {
    let mut latest: BTreeMap<(&ObjectKey, SocketAddr), Option<&MeshEndpoint>> = BTreeMap::new();
    for entry in registrations.by_id.values() {
        let e = &entry.endpoint;
        latest.insert((&e.service, e.address), (!entry.draining).then_some(e));
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
