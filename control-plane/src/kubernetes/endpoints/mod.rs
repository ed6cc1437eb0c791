//! Endpoints from EndpointSlices: in Kubernetes the cluster says which pods
//! serve a Service, and with which identity.
//!
//! Three watches (EndpointSlices, Pods, Services of every namespace) keep
//! compact facts of each object (`facts`); a relist replaces a kind at once
//! (`cache`); after each burst of changes the endpoints are computed anew
//! (`compute`, pure: a slice endpoint serves its Service only when the
//! Service's selector selects its pod, the pod has a proxy and the address is
//! the pod's; the identity is the pod's service account) and fed whole to
//! [`crate::endpoints::Discovery`]. Skipped endpoints are logged once per
//! change (`warnings`). A lost API server leaves the endpoints as they were.
//!
//! Not here: the Services' ports and policies (the Kubernetes source turns
//! Services into documents like the file mode's), nor whether translation
//! trusts these endpoints (it does, by their origin: see
//! [`crate::authority`]).

mod cache; //    one kind's facts, kept current by changes and relists
mod compute; //  facts -> mesh endpoints (pure), and what was left out
mod facts; //    the little kept of each Pod, Service and EndpointSlice
mod warnings; // skipped endpoints logged once per change
mod watch; //    the three watches, recompute, feed discovery

pub use compute::{compute, Cluster, Computed, Reason, Skipped};
pub use facts::{
    Conditions, Inbound, PodFacts, ServiceFacts, SliceEndpoint, SliceFacts, DEFAULT_INBOUND_PORT,
    INBOUND_PORT, SERVICE_NAME_LABEL,
};
pub use watch::run;

#[cfg(test)]
mod tests;
