//! Workload identity: bootstrap tokens and the gRPC service that turns a CSR and a
//! token (a bootstrap token, or in Kubernetes a service-account token checked by
//! TokenReview) into a certificate from [`crate::ca`].

mod issued; //  what was issued to whom, newest per identity (`remora status`)
mod service;
mod tokens;

pub use issued::{Issued, IssuedCertificates};
pub use service::IdentityService;
pub use tokens::{Grant, TokenError, TokenStore, TOKENS_FILE};
