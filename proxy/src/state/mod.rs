//! Static stability across a restart: what a proxy keeps in its state directory
//! (bootstrap `state_dir`, e.g. a tmpfs) so that, started while the control
//! plane is unreachable, it serves at once with its last accepted config and,
//! with an identity, its certificate.
//!
//! - [`dir`]: the directory (created 0700, refused when other users can write
//!   it) and atomic writes (temporary file, flush, rename, flush the directory).
//! - [`config`]: the config file: the xDS resources of the last ACKed response
//!   of each type, with the proxy they were for, checked by length and SHA-256.
//! - [`config_state`]: at run time: loading (whole, this proxy's, or nothing),
//!   where the config in force came from, and the writer of each accepted one.
//! - [`certificate`]: the workload certificate and key (0600).
//!
//! Not for: compiling or checking certificates. The xDS client re-compiles a
//! saved config with the code that applies a response; the identity module
//! decides whether a saved certificate is still good. This module depends on
//! nothing else in the crate.

mod certificate;
mod config;
mod config_state;
mod dir;

pub use certificate::{CertificateFileError, SavedCertificate, CERTIFICATE_FILE};
pub use config::{ConfigFileError, Owner, SavedConfig, SavedType, CONFIG_FILE};
pub use config_state::{ConfigState, Source, Stamp, StateView};
pub use dir::{StateDir, StateError};
