//! remora-proxy: the data-plane proxy.
//!
//! - [`bootstrap`]: who this proxy is and where it listens (the bootstrap file).
//! - [`limits`]: header and body sizes, connections per listener, idle time.
//! - [`identity`]: the workload key and certificate, renewed before expiry.
//! - [`tls`]: mTLS between proxies, verified by SPIFFE identity.
//! - [`xds`]: the ADS client that keeps the config current and survives outages.
//! - [`compile`]: xDS resources -> an immutable [`snapshot::Snapshot`], or rejections.
//! - [`snapshot`]: the compiled config the request path reads (routes, clusters).
//! - [`upstream`]: long-lived endpoints, their connections and balancer state.
//! - [`resilience`]: retry policies, retry budgets and deadlines.
//! - [`balance`]: power-of-two-choices over peak-EWMA latency.
//! - [`authz`]: who may call this proxy's service (compiled RBAC), per request.
//! - [`detect`]: what an accepted connection speaks (HTTP/1, h2, TLS or opaque).
//! - [`http`]: the request path: server, outbound and inbound handlers.
//! - [`tcp`]: opaque TCP: copying both ways, resets, the proxy-to-proxy header.
//! - [`telemetry`]: per-hop metrics (`/metrics`), TCP counters, request ids,
//!   access logs, traces, and reports to the control plane.
//! - [`admin`]: `/live`, `/ready`, `/config_dump`.
//! - [`run`]: wires it all together.
#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod balance;
pub mod bootstrap;
pub mod compile;
pub mod detect;
#[doc(hidden)]
pub mod fuzzing; // entry points for the fuzz targets in fuzz/ (not an API)
pub mod http;
pub mod identity;
pub mod limits;
pub mod resilience;
pub mod run;
pub mod snapshot;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod xds;
