//! The control plane's own serving certificates (the xDS port's and the
//! admission webhook's): issued here by the mesh's CA for the control
//! plane's SPIFFE id and the host names clients dial, kept in memory (never
//! on disk) and renewed at half their lifetime, so a long-running control
//! plane never serves an expired one.
//!
//! Both listeners serve the same identity, [`control_plane_identity`]: the
//! one Remora proxies check, and the one [`crate::identity`] never issues to
//! anyone else.
//!
//! Not here: the TLS config around the certificate (client authentication
//! and ALPN differ per listener), or what is served.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{CertificateAuthority, HostName, InvalidSpiffeId, SpiffeId};

/// The control plane's service account (`remora install` runs it as this).
pub const CONTROL_PLANE_ACCOUNT: &str = "remora-control";
/// Its namespace outside a cluster, and the default one inside.
pub const CONTROL_PLANE_NAMESPACE: &str = "remora-system";
/// How long a client of a control-plane listener gets to finish its TLS
/// handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before trying again after a failed renewal, at most.
const RETRY: Duration = Duration::from_secs(10);

/// `spiffe://<trust_domain>/ns/<namespace>/sa/remora-control`.
pub fn control_plane_identity(
    trust_domain: &str,
    namespace: &str,
) -> Result<SpiffeId, InvalidSpiffeId> {
    SpiffeId::new(trust_domain, namespace, CONTROL_PLANE_ACCOUNT)
}

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("cannot issue the {purpose} certificate for {identity} ({hosts}): {message}")]
    Issue {
        purpose: &'static str,
        identity: String,
        hosts: String,
        message: String,
    },
}

/// The certificate served now, swapped whole on renewal; what rustls asks.
#[derive(Debug)]
pub struct Current {
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
    /// For messages: "xDS", "admission webhook".
    purpose: &'static str,
}

impl Issuer {
    fn issue(&self) -> Result<CertifiedKey, ServingError> {
        let err = |message: String| ServingError::Issue {
            purpose: self.purpose,
            identity: self.identity.to_string(),
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
        CertifiedKey::from_der(chain, key, &self.provider).map_err(|e| err(e.to_string()))
    }
}

/// A serving certificate and the task that renews it (stopped when this is
/// dropped).
#[derive(Debug)]
pub struct ServingCert {
    current: Arc<Current>,
    provider: Arc<CryptoProvider>,
    identity: SpiffeId,
    hosts: Vec<HostName>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for ServingCert {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl ServingCert {
    /// Issues a certificate for `identity` and `hosts`, valid for `ttl`, and
    /// starts renewing it. Must run inside a tokio runtime (the renewal is a
    /// task). `purpose` names it in logs and errors.
    pub fn start(
        ca: Arc<CertificateAuthority>,
        identity: SpiffeId,
        hosts: Vec<HostName>,
        ttl: Duration,
        purpose: &'static str,
    ) -> Result<Self, ServingError> {
        let issuer = Issuer {
            ca,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            identity: identity.clone(),
            hosts: hosts.clone(),
            ttl,
            purpose,
        };
        let current = Arc::new(Current {
            key: ArcSwap::from_pointee(issuer.issue()?),
        });
        let provider = issuer.provider.clone();
        let renewal = tokio::spawn(renew(current.clone(), issuer));
        Ok(Self {
            current,
            provider,
            identity,
            hosts,
            renewal,
        })
    }

    /// For `ServerConfig::with_cert_resolver`.
    pub fn resolver(&self) -> Arc<Current> {
        self.current.clone()
    }

    /// The crypto provider the certificate's key was loaded with; the TLS
    /// config must use the same.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    /// The SPIFFE id the certificate carries.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// The names the certificate is valid for.
    pub fn hosts(&self) -> &[HostName] {
        &self.hosts
    }

    /// The chain served now (DER): the leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.key.load().cert.clone()
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
                tracing::info!(certificate = issuer.purpose, "serving certificate renewed");
            }
            Err(error) => {
                tracing::error!(certificate = issuer.purpose, error = %crate::Chain(&error), "cannot renew a serving certificate");
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
        let identity = control_plane_identity("cluster.local", "remora-system").unwrap();
        let cert = ServingCert::start(Arc::new(ca), identity, hosts, ttl, "test").unwrap();
        let first = cert.chain()[0].clone();

        tokio::time::sleep(ttl / 2 - Duration::from_secs(60)).await;
        assert_eq!(cert.chain()[0], first, "not renewed early");

        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_ne!(cert.chain()[0], first, "renewed at half its lifetime");
    }

    #[test]
    fn the_control_plane_identity_is_its_account_in_the_namespace_given() {
        assert_eq!(
            control_plane_identity("cluster.local", "mesh")
                .unwrap()
                .to_string(),
            "spiffe://cluster.local/ns/mesh/sa/remora-control"
        );
    }
}
