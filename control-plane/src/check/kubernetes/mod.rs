//! `remora check --kubernetes`: what is wrong with an installation, asked of
//! the cluster itself. Each item is OK, WARN or FAIL with the reason and, when
//! there is one, the command that fixes it:
//!
//! - `install`: Remora's CRDs (and the Gateway API's HTTPRoute), the control
//!   plane's namespace, Deployment, Services and their endpoints, and the
//!   injector's webhook configuration (caBundle written, failurePolicy).
//! - `ca_secret`: the Secret the control plane keeps its CA in.
//! - `pods`: every pod that should have a proxy and does not: in a namespace
//!   labelled `remora.io/inject=enabled`, or labelled so itself.
//!
//! Only reads; what it reads is what the control plane's own role may read.
//! A WARN does not fail the check; a FAIL does; an API server that cannot be
//! reached is an error of its own (exit 3), not a FAIL.

mod ca_secret;
mod install;
mod pods;
mod report;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

pub use report::{Item, Report, Verdict};

use crate::client::Exit;
use crate::kubernetes::{connect_as, KubeError, KubernetesOptions};

/// How long one request may take before the API server counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Client(#[from] KubeError),
    #[error("cannot reach the Kubernetes API server ({what})")]
    Unreachable {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Kubernetes API server did not answer within {timeout:?} ({what})")]
    Timeout { what: String, timeout: Duration },
}

impl CheckError {
    /// 3 when the API server cannot be reached, else 1 (no usable kubeconfig).
    pub fn exit(&self) -> Exit {
        match self {
            CheckError::Client(_) => Exit::Failed,
            CheckError::Unreachable { .. } | CheckError::Timeout { .. } => Exit::Unreachable,
        }
    }
}

/// Every item, in a fixed order: the installation first, then the pods.
pub async fn run(options: &KubernetesOptions) -> Result<Report, CheckError> {
    let client = connect_as(options, concat!("remora-check/", env!("CARGO_PKG_VERSION"))).await?;
    let mut report = Report::default();
    install::crds(&client, &mut report).await?;
    install::control_plane(&client, &options.namespace, &mut report).await?;
    ca_secret::secret(&client, &options.namespace, &mut report).await?;
    install::webhook(&client, &options.namespace, &mut report).await?;
    pods::without_proxy(&client, &options.namespace, &mut report).await?;
    Ok(report)
}

/// One request: the outer error when the API server did not answer at all
/// (the check stops), the inner one when it answered with an error (an item
/// fails, the check goes on).
async fn call<T>(
    what: &str,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, CheckError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Err(_) => Err(CheckError::Timeout {
            what: what.to_owned(),
            timeout: REQUEST_TIMEOUT,
        }),
        Ok(Err(source)) if !answered(&source) => Err(CheckError::Unreachable {
            what: what.to_owned(),
            source,
        }),
        Ok(result) => Ok(result),
    }
}

/// Whether the API server answered (with an error status or a body we could
/// not read), as opposed to no connection, TLS or authentication plumbing.
fn answered(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(_) | kube::Error::SerdeError(_))
}

/// An API server's refusal, for a FAIL line.
fn refusal(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!(
            "the API server answered {} {}: {}",
            status.code, status.reason, status.message
        ),
        other => crate::Chain(other).to_string(),
    }
}
