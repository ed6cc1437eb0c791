//! Traffic: what proxies report about their hops, and the per-edge golden
//! signals computed from it (`remora stat`, `/api/v1/stat`, the dashboard).
//!
//! - [`store`]: each proxy's recent reports (cumulative counters);
//! - [`service`]: the `remora.telemetry.v1.Telemetry` gRPC service on the xDS
//!   port, which checks a report against the caller's certificate;
//! - [`window`]: one proxy's differences over a window, per hop;
//! - [`stat`]: those differences summed -> one row per `SRC -> DST` edge, and
//!   per `SRC -> parent` for routes that send to other Services;
//! - [`known`]: whether a service a query names exists at all;
//! - [`table`]: the rows as `remora stat` prints them;
//! - [`screen`]: `remora stat`'s output (clearing only a terminal, a reader
//!   that went away ending the command quietly);

pub mod known;
pub mod screen;
pub mod service;
pub mod stat;
pub mod store;
pub mod table;
pub mod window;

pub use known::unknown_service;
pub use service::TelemetryService;
pub use stat::{edges, Edge, Filter, ServiceRef, StatView};
pub use store::TrafficStore;
