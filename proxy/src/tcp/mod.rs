//! Opaque TCP forwarding: the pieces a connection that is not HTTP (declared
//! `tcp`, a server-first port, or nothing detected) is carried with. Routing and
//! connecting are the caller's; these only move bytes and say how it went.
//!
//! - [`connect`]: to a cluster's endpoint, plain or over mesh mTLS.
//! - `buffers`: the copy itself, with buffers held only while bytes move.
//! - `copy`: [`forward`] copies both ways with half-close and an idle timeout,
//!   and reports the bytes and how it [`End`]ed.
//! - `reset`: [`reset_on_drop`] passes a reset on to the other side.
//! - [`header`]: the 6-byte header that tells a server proxy which app port an
//!   mTLS opaque connection (ALPN `remora-tcp/1`) is for.

mod buffers;
pub mod carry;
pub mod connect;
mod copy;
pub mod header;
mod reset;

#[cfg(test)]
mod connect_tests;
#[cfg(test)]
mod copy_tests;

pub use copy::{forward, End, Forwarded};
pub use header::HeaderError;
pub use reset::{reset_on_drop, Socket, Tunnel};
