//! Endpoint discovery: which addresses serve each Service, as one component
//! that translation reads and the xDS server feeds, without either knowing
//! where an endpoint came from.
//!
//! In file mode an endpoint is a connected proxy that names a Service in its
//! node metadata (a self-registration). The xDS registry reports each
//! registration's life to [`Discovery`]: it joins when its stream opens
//! (admitted by endpoint authority, see [`admit`]), it leaves when the stream
//! ends, and it is withdrawn at once when the proxy says it is draining, so
//! callers stop picking it while it still serves what is in flight. Every
//! change publishes the whole set; translation turns it into
//! `ClusterLoadAssignment`s and the streams push them.
//!
//! In Kubernetes the cluster says who serves ([`Discovery::replace_feed`]:
//! the endpoints `kubernetes::endpoints` computes from EndpointSlices, Pods
//! and Service selectors, replaced whole on every change) and proxies do not
//! register; a proxy that says it is leaving withdraws its own pod's endpoint
//! ([`Discovery::withdraw`], the pod found by any of its IPs, see [`Feed`])
//! before the cluster marks it terminating. Both inputs are published as one
//! set.
//!
//! Not here: a Service's static `endpoints` (backends without a proxy), which
//! are part of the Service resource and read by translation with it; nor when
//! endpoints are sent to a stream (the xDS server holds them back after a
//! restart, see `xds::server`).

mod admission;
mod discovery;

pub use admission::{admit, Admission};
pub use discovery::{Discovery, Feed, Registration, Withdrawal};

#[cfg(test)]
mod tests;
