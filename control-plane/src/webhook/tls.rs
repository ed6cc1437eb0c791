//! The webhook's TLS config: the control plane's serving certificate
//! ([`crate::ca::ServingCert`], issued by the mesh's CA, whose trust bundle is
//! the webhook configuration's `caBundle`) for the names the API server
//! dials; HTTP/1.1, no client certificate (the API server presents none).

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use crate::ca::{CertificateAuthority, HostName, ServingCert, SpiffeId};

use super::WebhookError;

/// The webhook's TLS config and its certificate (renewed by a task that
/// stops when this is dropped).
pub struct WebhookTls {
    config: Arc<ServerConfig>,
    cert: ServingCert,
}

impl WebhookTls {
    /// A certificate for `hosts`, with the control plane's SPIFFE id
    /// `identity`, valid for `ttl`. Must run inside a tokio runtime (the
    /// renewal is a task).
    pub fn new(
        ca: Arc<CertificateAuthority>,
        identity: SpiffeId,
        ttl: Duration,
        hosts: Vec<HostName>,
    ) -> Result<Self, WebhookError> {
        let cert = ServingCert::start(ca, identity, hosts, ttl, "admission webhook")?;
        let mut config = ServerConfig::builder_with_provider(cert.provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(cert.resolver());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            cert,
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The names the certificate is valid for.
    pub fn hosts(&self) -> &[HostName] {
        self.cert.hosts()
    }
}
