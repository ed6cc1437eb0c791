//! The proxy's workload identity: a private key made here (it never leaves the
//! process), a certificate for it from the control plane's identity service, and
//! renewal at about 70% of each certificate's lifetime.
//!
//! - [`csr`]: key and CSR.
//! - [`schedule`]: when to renew, and how to retry (pure; tested with paused time).
//! - [`client`]: the renewal loop against `remora.identity.v1.Identity`.
//!
//! The certificate it obtains goes into a [`CertStore`] (kept by [`crate::tls`]).

mod client;
mod csr;
mod schedule;

pub use client::{run, IdentityConfig, TokenSource};
pub use csr::{new_request, CsrError, Request};
pub use schedule::renew_after;
// The certificate store belongs to `tls`, which reads it on every handshake.
pub use crate::tls::{CertStore, Certified};
