//! Traffic: what proxies report about their hops, and the per-edge golden
//! signals computed from it (`remora stat`, `/api/v1/stat`, the dashboard).
//!
//! - [`store`]: each proxy's recent reports (cumulative counters);
//! - [`service`]: the `remora.telemetry.v1.Telemetry` gRPC service on the xDS
//!   port, which checks a report against the caller's certificate;
//! - [`stat`]: differences over a window -> one row per `SRC -> DST` edge;
//! - [`table`]: the rows as `remora stat` prints them;
//! - [`fetch`]: `remora stat`'s request to the API.

pub mod fetch;
pub mod service;
pub mod stat;
pub mod store;
pub mod table;

pub use service::TelemetryService;
pub use stat::{edges, Edge, Filter, StatView};
pub use store::TrafficStore;
