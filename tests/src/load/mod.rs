//! An HTTP/1.1 load generator that records every response.
//!
//! Two modes over N keep-alive connections (one task and one request in flight per
//! connection):
//!
//! - **fixed rate** (open loop): request `k` of connection `i` is due at
//!   `(i + k * N) / rate` seconds after the start, whatever happened to the ones
//!   before. Latency runs from the due time when the connection was still busy with
//!   an earlier request (the wait is the server's fault: no coordinated omission),
//!   and from the actual send otherwise (so the timer's own lateness is not counted).
//! - **max** (closed loop): every connection sends back to back.
//!
//! Every response becomes a [`Sample`]. [`Load::snapshot_since`] is a live view for
//! tests (at most ~10 ms behind); [`Load::stop`] returns the [`Report`]. Samples are
//! buffered per connection and handed over in batches, so the hot path takes no
//! shared lock per request.
//!
//! ```no_run
//! # async fn f(addr: std::net::SocketAddr) {
//! use remora_tests::load::{Load, LoadSpec};
//! let load = Load::start(LoadSpec::rate(addr, "orders", 200.0).connections(4));
//! // ... change config ...
//! let report = load.stop().await;
//! assert_eq!(report.errors, 0);
//! # }
//! ```

mod connection;
mod run;
mod sample;
mod sink;
mod spec;
mod stats;

pub use run::Load;
pub use sample::{count_errors, share_of, Sample};
pub use spec::{LoadMode, LoadSpec};
pub use stats::{percentile, Report};
