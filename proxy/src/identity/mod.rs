//! The proxy's workload identity: a private key made here (it never leaves the
//! machine: it lives in memory and, with a bootstrap `state_dir`, in a 0600 file
//! there), a certificate for it from the control plane's identity service, and
//! renewal at about 70% of each certificate's lifetime.
//!
//! - [`csr`]: key and CSR.
//! - [`schedule`]: when to renew, and how to retry (pure; tested with paused time).
//! - [`client`]: the renewal loop against `remora.identity.v1.Identity`.
//! - [`restore`]: the certificate kept in the state dir, used at start while it
//!   is good (this identity, valid, chaining to the trust bundle).
//!
//! The certificate it obtains goes into a [`CertStore`] (kept by [`crate::tls`]).

mod client;
mod csr;
mod restore;
mod schedule;

pub use client::{run, IdentityConfig, TokenSource};
pub use csr::{new_request, CsrError, Request};
pub use restore::restore;
pub use schedule::renew_after;
// The certificate store belongs to `tls`, which reads it on every handshake.
pub use crate::tls::{CertStore, Certified};
