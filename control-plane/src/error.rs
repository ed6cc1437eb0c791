//! The control plane's errors: each names the address or path it is about. The
//! underlying error is the `source`, not repeated in the message; [`Chain`]
//! displays both.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    WriteConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch {path}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the addresses file {path}")]
    AddressesFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("xDS server failed")]
    XdsServer(#[from] tonic::transport::Error),
    #[error("certificate authority")]
    Ca(#[from] crate::ca::CaError),
    #[error("tokens")]
    Token(#[from] crate::identity::TokenError),
    #[error("xDS transport")]
    Transport(#[from] crate::control::TransportError),
    #[error("Kubernetes")]
    Kubernetes(#[from] crate::kubernetes::KubeError),
    /// A write to a source that takes none (the cluster: use kubectl).
    #[error("{0} is read-only: apply and delete resources with kubectl (e.g. kubectl apply -f FILE), not through remora")]
    ReadOnly(String),
    #[error("admission webhook")]
    Webhook(#[from] crate::webhook::WebhookError),
}

/// Displays an error followed by its causes: `cannot read /x: No such file or
/// directory (os error 2)`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            // Some errors (kube's, io's wrappers) already print their cause:
            // say each thing once.
            let text = e.to_string();
            if !said.contains(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_shows_the_cause_once() {
        let e = Error::ReadConfig {
            path: "/x".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        };
        assert_eq!(Chain(&e).to_string(), "cannot read /x: not found");
    }

    /// An error whose message already holds its cause's.
    #[derive(Debug, thiserror::Error)]
    #[error("failed to read kubeconfig: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_already_said_is_not_said_again() {
        let e = Repeats(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file",
        ));
        assert_eq!(
            Chain(&e).to_string(),
            "failed to read kubeconfig: No such file"
        );
    }
}
