//! The mutating admission webhook: the Kubernetes API server sends each Pod
//! it is about to create (an AdmissionReview v1) to `POST /inject`, and gets
//! back a JSONPatch that adds the sidecar, made by the same pure function as
//! `remora inject` ([`crate::inject::inject`]), so both give the same pod.
//!
//! Which pods reach the webhook is the MutatingWebhookConfiguration's choice
//! (its `namespaceSelector` on `remora.io/inject: enabled`, and optionally an
//! `objectSelector`): a request does not say whether a selector matched, so
//! every Pod that arrives is injected unless it is annotated
//! `remora.io/inject: disabled`, is in the control plane's own namespace, is
//! already injected, or runs on the host's network. The configuration must
//! therefore send only opted-in namespaces or pods.
//!
//! - `review`: AdmissionReview in, AdmissionReview out (pure).
//! - `patch`: the object as JSON -> injected -> the JSONPatch between them.
//! - `tls`: the TLS config around the control plane's serving certificate
//!   ([`crate::ca::ServingCert`]) for the webhook's DNS names.
//! - `body`: reading a request body: size cap and timeout.
//! - `per_ip`: open connections counted per client address.
//! - `server`: HTTPS (HTTP/1.1) on `--webhook-addr`; one path, `POST /inject`;
//!   reviews computed off the async runtime, a few at a time.
//! - `ca_bundle`: keeps the `caBundle` of the `remora-injector`
//!   MutatingWebhookConfiguration equal to the CA's trust bundle.
//!
//! Not here: the webhook configuration itself (`remora install` prints it).

mod body;
mod ca_bundle;
mod patch;
mod per_ip;
mod review;
mod server;
mod tls;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ca::{CertificateAuthority, HostName, SpiffeId};
use crate::inject::InjectSettings;

pub use ca_bundle::{bundle_patch, WEBHOOK_CONFIGURATION};
pub use review::{answer, encode, Answer, BadReview, Outcome, Policy, Skip};
pub use tls::WebhookTls;

/// The webhook's path.
pub const PATH: &str = "/inject";
/// The Service `remora install` puts in front of the webhook.
pub const SERVICE_NAME: &str = "remora-webhook";

/// `--webhook-*`: where and as whom the webhook serves, and what it injects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// HTTPS listen address; port 0 picks a free port.
    pub addr: SocketAddr,
    /// The DNS names or IPs of the serving certificate; empty: the Service's
    /// name, `remora-webhook.<namespace>.svc`.
    pub server_names: Vec<HostName>,
    /// The control plane's own namespace: its pods are never injected.
    pub namespace: String,
    /// What is injected (the same settings as `remora inject`).
    pub settings: InjectSettings,
}

impl WebhookOptions {
    /// The names of the serving certificate: the operator's, else the
    /// Service's in-cluster name.
    pub fn hosts(&self) -> Result<Vec<HostName>, crate::ca::InvalidHostName> {
        if !self.server_names.is_empty() {
            return Ok(self.server_names.clone());
        }
        let name = format!("{SERVICE_NAME}.{}.svc", self.namespace);
        Ok(vec![name.parse()?])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook's certificate names `{name}`, which is not a host name")]
    Host {
        name: String,
        #[source]
        source: crate::ca::InvalidHostName,
    },
    #[error(transparent)]
    Serving(#[from] crate::ca::ServingError),
    #[error("the webhook's TLS config")]
    Rustls(#[from] rustls::Error),
}

/// Serves the webhook on `listener` until `shutdown` turns `true`; with a
/// cluster client, also keeps the webhook configuration's `caBundle` current.
/// Its certificate carries `identity`, the control plane's SPIFFE id (a
/// client that checks the host ignores it). Fails at once when its
/// certificate cannot be issued.
pub fn spawn(
    listener: TcpListener,
    options: &WebhookOptions,
    identity: SpiffeId,
    ca: Arc<CertificateAuthority>,
    ttl: Duration,
    kube: Option<kube::Client>,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, WebhookError> {
    let hosts = options.hosts().map_err(|source| WebhookError::Host {
        name: source.name.clone(),
        source,
    })?;
    let tls = WebhookTls::new(ca.clone(), identity, ttl, hosts)?;
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        names = %tls.hosts().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        namespace = %options.namespace,
        image = %options.settings.image,
        "admission webhook serving POST {PATH}"
    );
    // The proxy verifies the control plane from its first certificate request
    // (which carries its token) with the CA this webhook knows.
    let mut settings = options.settings.clone();
    if settings.trust_bundle.is_none() {
        settings.trust_bundle = Some(ca.trust_bundle_pem().to_owned());
    }
    let policy = Arc::new(Policy {
        settings,
        own_namespace: options.namespace.clone(),
    });
    let bundle = kube.map(|client| {
        tokio::spawn(ca_bundle::keep(
            client,
            ca.trust_bundle_pem().to_owned(),
            shutdown.clone(),
        ))
    });
    Ok(tokio::spawn(async move {
        server::serve(listener, tls, policy, shutdown).await;
        if let Some(bundle) = bundle {
            let _ = bundle.await;
        }
    }))
}
