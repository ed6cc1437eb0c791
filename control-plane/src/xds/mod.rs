//! The xDS server: state-of-the-world ADS (Envoy's `AggregatedDiscoveryService`).
//!
//! Not here: what the resources are ([`crate::translate`]).

mod peer;
mod refusals;
mod registry;
mod server;
mod snapshot;
mod stream;
mod subscription;
mod version;

pub use peer::XdsPeer;
pub use refusals::{Reason, Refusals, Refused};
pub use registry::{Nack, ProxyIdentity, ProxyStatus, Registry, TypeStatus};
pub use server::{AdsServer, DEFAULT_RECONNECT_GRACE};
pub use snapshot::{publish_config, Snapshot, TranslationCache};
pub use stream::StreamState;
