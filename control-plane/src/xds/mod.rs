//! The xDS server: state-of-the-world ADS (Envoy's `AggregatedDiscoveryService`).
//!
//! Not here: what the resources are ([`crate::translate`]), or which addresses
//! serve a Service ([`crate::endpoints`], which the registry feeds).

mod peer;
mod refusals;
mod registry;
mod server;
mod service_watch;
mod snapshot;
mod stream;
mod subscription;
mod version;

pub use peer::XdsPeer;
pub use refusals::{Reason, Refusals, Refused};
pub use registry::{
    is_draining, Connection, Nack, ProxyIdentity, ProxyStatus, Registry, TypeStatus, DRAINING,
};
pub use server::{AdsServer, DEFAULT_RECONNECT_GRACE};
pub use snapshot::{publish_config, Snapshot, TranslationCache};
pub use stream::StreamState;
