//! remora-net: connection plumbing shared by the proxy and the control plane,
//! so every listener of the mesh bounds what one client can hold.
//!
//! - [`idle`]: close a connection that has been idle for a whole timeout.
//! - [`slots`]: at most N connections per listener; the rest are closed at once.
#![forbid(unsafe_code)]

pub mod idle;
pub mod slots;

pub use idle::{Activity, IdleTimeout, InFlight};
pub use slots::{Slot, Slots};
