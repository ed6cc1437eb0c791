//! Workload identity: bootstrap tokens and the gRPC service that turns a CSR and a
//! token into a certificate from [`crate::ca`].

mod service;
mod tokens;

pub use service::IdentityService;
pub use tokens::{Grant, TokenError, TokenStore, TOKENS_FILE};
