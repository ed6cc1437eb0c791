//! The webhook's serving certificate: issued by the mesh's CA (whose trust
//! bundle is the webhook configuration's `caBundle`) for the names the API
//! server dials, kept in memory and renewed at half its lifetime, so a
//! long-running control plane never serves an expired one.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::ca::{CertificateAuthority, HostName, SpiffeId};

use super::{WebhookError, ACCOUNT};

/// How long to wait before trying again after a failed renewal, at most.
const RETRY: Duration = Duration::from_secs(10);

/// The current certificate, swapped whole on renewal.
#[derive(Debug)]
struct Current {
    key: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.load_full())
    }
}

/// What a renewal needs to issue the same certificate again.
#[derive(Debug, Clone)]
struct Issuer {
    ca: Arc<CertificateAuthority>,
    provider: Arc<CryptoProvider>,
    identity: SpiffeId,
    hosts: Vec<HostName>,
    ttl: Duration,
}

impl Issuer {
    fn issue(&self) -> Result<CertifiedKey, WebhookError> {
        let err = |message: String| WebhookError::Issue {
            hosts: self
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            message,
        };
        let issued = self
            .ca
            .issue(&self.identity, &self.hosts, self.ttl)
            .map_err(|e| err(crate::Chain(&e).to_string()))?;
        let mut chain = Vec::new();
        for pem in [&issued.signed.leaf_pem, &issued.signed.chain_pem] {
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                chain.push(c.map_err(|e| err(e.to_string()))?);
            }
        }
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        Ok(CertifiedKey::from_der(chain, key, &self.provider)?)
    }
}

/// The webhook's TLS config and the task that renews its certificate
/// (stopped when this is dropped).
pub struct WebhookTls {
    config: Arc<ServerConfig>,
    current: Arc<Current>,
    hosts: Vec<HostName>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookTls {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl WebhookTls {
    /// A certificate for `hosts`, with the control plane's SPIFFE id in
    /// `namespace`, valid for `ttl`. Must run inside a tokio runtime (the
    /// renewal is a task).
    pub fn new(
        ca: Arc<CertificateAuthority>,
        namespace: &str,
        ttl: Duration,
        hosts: Vec<HostName>,
    ) -> Result<Self, WebhookError> {
        let identity = SpiffeId::new(ca.trust_domain(), namespace, ACCOUNT).map_err(|e| {
            WebhookError::Issue {
                hosts: format!("namespace {namespace}"),
                message: e.to_string(),
            }
        })?;
        let issuer = Issuer {
            ca,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            identity,
            hosts: hosts.clone(),
            ttl,
        };
        let current = Arc::new(Current {
            key: ArcSwap::from_pointee(issuer.issue()?),
        });
        let mut config = ServerConfig::builder_with_provider(issuer.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let renewal = tokio::spawn(renew(current.clone(), issuer));
        Ok(Self {
            config: Arc::new(config),
            current,
            hosts,
            renewal,
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The names the certificate is valid for.
    pub fn hosts(&self) -> &[HostName] {
        &self.hosts
    }

    /// The leaf certificate served now (DER).
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.key.load().cert.first().cloned()
    }
}

/// Issues a new certificate at half the lifetime of the last one; after a
/// failure (the current one is still valid for a while), tries again soon.
async fn renew(current: Arc<Current>, issuer: Issuer) {
    let mut wait = issuer.ttl / 2;
    loop {
        tokio::time::sleep(wait).await;
        match issuer.issue() {
            Ok(key) => {
                current.key.store(Arc::new(key));
                wait = issuer.ttl / 2;
                tracing::info!("admission webhook certificate renewed");
            }
            Err(error) => {
                tracing::error!(error = %crate::Chain(&error), "cannot renew the admission webhook certificate");
                wait = RETRY.min(issuer.ttl / 4);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_certificate_is_renewed_at_half_its_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
        let ttl = Duration::from_secs(3600);
        let hosts = vec!["remora-webhook.remora-system.svc".parse().unwrap()];
        let tls = WebhookTls::new(Arc::new(ca), "remora-system", ttl, hosts).unwrap();
        let first = tls.leaf().unwrap();

        tokio::time::sleep(ttl / 2 - Duration::from_secs(60)).await;
        assert_eq!(tls.leaf().unwrap(), first, "not renewed early");

        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_ne!(tls.leaf().unwrap(), first, "renewed at half its lifetime");
    }
}
