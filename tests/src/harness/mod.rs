//! Run the real Remora binaries as child processes on loopback.
//!
//! Every process binds port 0 and writes the addresses it bound to a file, which the
//! harness polls; every process is killed when its handle drops, and its stdout and
//! stderr are kept in a file so a failing test can print them.
//!
//! - [`bin_path`]: where the binaries are (next to the test executable).
//! - [`ControlPlane`]: `remora control` with a config directory.
//! - [`Proxy`]: `remora-proxy` with a generated bootstrap file.
//! - [`wait_for`]: poll a condition until it holds (events, not sleeps).
//! - [`http`]: a one-shot HTTP/1.1 client for admin and API endpoints.
//! - [`PrometheusServer`]: Debian's Prometheus scraping proxies, and its query API.
//! - [`OtlpReceiver`]: an OTLP/gRPC trace collector that keeps what it receives.

mod bin_path;
mod command;
mod control_plane;
pub mod http;
mod otlp;
mod process;
mod prometheus;
mod proxy;
mod wait;

pub use bin_path::bin_path;
pub use command::run_with_stdin;
pub use control_plane::ControlPlane;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use process::Process;
pub use prometheus::{listening_ports, PrometheusServer};
pub use proxy::{Proxy, ProxySpec};
pub use wait::{wait_for, wait_for_some, WaitTimeout};

/// How long a started process has to write its addresses file.
pub const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
