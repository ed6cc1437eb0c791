//! remora-proxy: the data-plane proxy.
//!
//! Modules from the bottom layer up; each names only modules above it in this
//! list's order of layers (`../shared/tools/module-cycles` checks no cycle).
//!
//! Shared types, no dependencies inside the crate:
//! - [`matchers`]: header and path matchers (routes, authorization, faults).
//! - [`grpc`]: gRPC content type and status.
//! - [`backoff`]: jittered exponential backoff.
//! - [`transparent`]: the original destination of a redirected connection.
//! - [`init`]: `remora-proxy init`, the iptables rules of transparent mode.
//! - [`limits`]: header and body sizes, connections per listener, idle time.
//! - [`state`]: the state directory: the last accepted config and the
//!   certificate, kept across a restart.
//! - [`drain`]: the phases of leaving the mesh (propagation window, hard cap).
//!
//! Security and telemetry primitives:
//! - [`tls`]: mTLS between proxies, verified by SPIFFE identity; the certificate store.
//! - [`telemetry`]: per-hop metrics, TCP counters, request ids, access logs,
//!   traces, and reports to the control plane.
//! - [`identity`]: the workload key and certificate, renewed before expiry.
//! - [`bootstrap`]: who this proxy is and where it listens (the bootstrap file,
//!   or environment variables in a pod).
//!
//! Policies and balancing:
//! - [`authz`]: who may call this proxy's service (compiled RBAC).
//! - [`resilience`]: retry policies, retry budgets, deadlines, faults, rate limits.
//! - [`balance`]: power-of-two-choices over peak-EWMA latency, round robin, ring hash.
//!
//! Upstream state and config:
//! - [`upstream`]: long-lived endpoints, their connections and balancer state.
//! - [`snapshot`]: the compiled config the request path reads (routes, clusters).
//! - [`compile`]: xDS resources -> an immutable [`snapshot::Snapshot`], or rejections.
//! - [`xds`]: the ADS client that keeps the config current and survives outages.
//!
//! The data path:
//! - [`detect`]: what an accepted connection speaks (HTTP/1, h2, TLS or opaque).
//! - [`http`]: the HTTP request path: server, the outbound stack of layers, the
//!   inbound handler.
//! - [`tcp`]: opaque TCP: connecting through the mesh, copying both ways, resets.
//!
//! On top:
//! - [`accept`]: the connection path: accept -> original destination -> detect ->
//!   HTTP or opaque TCP, for every listener.
//! - [`admin`]: `/live`, `/ready`, `/config_dump`, `/metrics`.
//! - [`hooks`]: `remora-proxy wait` and `drain`, the classic sidecar's hooks
//!   (a client of the admin port).
//! - [`run`]: wires it all together.
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod authz;
pub mod backoff;
pub mod balance;
pub mod bootstrap;
pub mod compile;
pub mod detect;
pub mod drain;
#[doc(hidden)]
pub mod fuzzing; // entry points for the fuzz targets in fuzz/ (not an API)
pub mod grpc;
pub mod hooks;
pub mod http;
pub mod identity;
pub mod init;
pub mod limits;
pub mod matchers;
pub mod resilience;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod transparent;
pub mod upstream;
pub mod xds;
