//! Remora's end-to-end test kit: run the real binaries on loopback and drive them.
//!
//! - [`harness`]: start `remora` (control plane) and `remora-proxy` as child
//!   processes on port 0, read back where they bound, wait for events, read logs.
//! - [`app`]: tiny in-process backends (an HTTP/1.1 + h2c server and a gRPC echo
//!   server) that say which backend answered.
//! - [`load`]: an open-loop fixed-rate and a closed-loop max-throughput HTTP/1.1 load
//!   generator that records every response; used by the tests and by `bench/run`
//!   (through the `remora-load` binary).
//! - [`kube`]: the Kubernetes API server double and the real `kubectl` pointed at it.
//!
//! Not for: the benchmark itself (that is `bench/`), or unit tests of the proxy and
//! the control plane (those live in their crates).
#![forbid(unsafe_code)]

pub mod app;
pub mod harness;
pub mod kube;
pub mod load;
