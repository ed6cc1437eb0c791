//! remora-proxy: the data-plane proxy.
//!
//! - [`bootstrap`]: who this proxy is and where it listens (the bootstrap file).
//! - [`init`]: `remora-proxy init`, the iptables rules of transparent mode.
//! - [`transparent`]: the original destination of a redirected connection.
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
//! - [`http`]: the request path: server, outbound and inbound handlers.
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
#[doc(hidden)]
pub mod fuzzing; // entry points for the fuzz targets in fuzz/ (not an API)
pub mod http;
pub mod identity;
pub mod init;
pub mod limits;
pub mod resilience;
pub mod run;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod transparent;
pub mod upstream;
pub mod xds;
