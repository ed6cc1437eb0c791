//! Endpoints from EndpointSlices: in Kubernetes the cluster says which pods
//! serve a Service, and with which identity.
//!
//! Three watches (EndpointSlices, Pods, Services of every namespace) keep
//! compact facts of each object (`facts`); a relist replaces a kind at once
//! (`cache`); after each burst of changes (`burst`) the endpoints are computed
//! anew (`compute`, pure: a slice endpoint serves its Service only when the
//! Service's selector selects its pod, the pod has a proxy, runs as an
//! account the Service lists if it lists any, and the address is the pod's;
//! the identity is the pod's service account) and fed whole to
//! [`crate::endpoints::Discovery`]. Skipped endpoints are logged once per
//! change (`warnings`), failing watches once per outage (`health`). A lost
//! API server leaves the endpoints as they were.
//!
//! The watch starts before the control plane serves, and says when its first
//! feed is done ([`EndpointWatch::ready`]): the xDS server holds endpoints
//! back until then.
//!
//! Not here: the Services' ports and policies (the Kubernetes source turns
//! Services into documents like the file mode's), nor whether translation
//! trusts these endpoints (it does, by their origin and the Service's
//! explicit accounts: see [`crate::authority`]).

mod burst; //    a burst of changes -> one recompute (quiet 50 ms, at most 1 s)
mod cache; //    one kind's facts, kept current by changes and relists
mod compute; //  facts -> mesh endpoints (pure), and what was left out
mod facts; //    the little kept of each Pod, Service and EndpointSlice
mod health; //   failing watches told once: outages, RBAC refusals
mod warnings; // skipped endpoints logged once per change
mod watch; //    the three watches, recompute, feed discovery

pub use compute::{compute, Cluster, Computed, Reason, Skipped};
pub use facts::{
    Conditions, Inbound, PodFacts, ServiceFacts, SliceEndpoint, SliceFacts, DEFAULT_INBOUND_PORT,
    INBOUND_PORT, SERVICE_NAME_LABEL,
};
pub use watch::{spawn, EndpointWatch};

#[cfg(test)]
mod tests;
