//! mTLS between proxies: TLS 1.3 with the proxy's workload certificate on both
//! sides. The client checks that the server presents the SPIFFE identity the
//! control plane announced for that endpoint; the server requires a client
//! certificate from the mesh CA and learns the caller's identity.
//!
//! Configs are built once per certificate generation and swapped whole, so a
//! renewal applies to new handshakes and never touches open connections.

mod channel;
mod identity;
mod store;
mod verify;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use channel::{causes, connect, handshake_failure};
pub use identity::{peer_identity, spiffe_id};
pub use store::{CertStore, Certified};
pub use verify::SpiffeServerVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate PEM: {0}")]
    Pem(String),
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A trust bundle the bootstrap names: its certificates (PEM) and the file
/// they came from, which an error names when the control plane's certificate
/// does not verify against them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    pub pem: String,
    pub file: std::path::PathBuf,
}

/// What every handshake of one certificate generation shares.
struct Built {
    generation: u64,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    server: Arc<ServerConfig>,
}

pub struct TlsContext {
    store: CertStore,
    built: ArcSwapOption<Built>,
}

pub const ALPN_H2: &[u8] = b"h2";
/// Opaque TCP between proxies: after the handshake the client sends the app
/// port it wants (see `tcp::header`), then the app's bytes.
pub const ALPN_TCP: &[u8] = b"remora-tcp/1";

/// The control plane's SPIFFE id, which the proxy verifies on its xDS and identity
/// connections: its account in its namespace (bootstrap `control_plane_namespace`).
pub fn control_plane_identity(trust_domain: &str, namespace: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/remora-control")
}

/// How many certificates a PEM bundle holds; an error for malformed PEM.
pub fn count_certificates(pem: &str) -> Result<usize, TlsError> {
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        c.map_err(|e| TlsError::Pem(e.to_string()))?;
        n += 1;
    }
    Ok(n)
}

/// A client config without a client certificate that accepts only a server
/// presenting `expected`, chained to `bundle_pem`: for the first certificate
/// request, before the proxy has a certificate of its own.
pub fn server_auth_config(bundle_pem: &str, expected: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots.add(c.map_err(|e| TlsError::Pem(e.to_string()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = SpiffeServerVerifier::new(Arc::new(roots), provider.clone(), expected);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

impl TlsContext {
    pub fn new(store: CertStore) -> Arc<Self> {
        Arc::new(Self {
            store,
            built: ArcSwapOption::empty(),
        })
    }

    /// The server config for the current certificate, or `None` before the first.
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.current().map(|b| b.server.clone())
    }

    /// A client config that accepts only a server presenting `expected`.
    pub fn client_config(&self, expected: &str) -> Option<Arc<ClientConfig>> {
        self.client_config_for(expected, ALPN_H2)
    }

    /// The same, offering `alpn` (HTTP/2, or opaque TCP's [`ALPN_TCP`]).
    pub fn client_config_for(&self, expected: &str, alpn: &[u8]) -> Option<Arc<ClientConfig>> {
        let built = self.current()?;
        let verifier =
            SpiffeServerVerifier::new(built.roots.clone(), built.provider.clone(), expected);
        let config = ClientConfig::builder_with_provider(built.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .and_then(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_client_auth_cert(built.chain.clone(), built.key.clone_key())
            });
        match config {
            Ok(mut config) => {
                config.alpn_protocols = vec![alpn.to_vec()];
                Some(Arc::new(config))
            }
            Err(error) => {
                tracing::error!(%error, "cannot build the mTLS client config");
                None
            }
        }
    }

    fn current(&self) -> Option<Arc<Built>> {
        let cert = self.store.load_full()?;
        if let Some(b) = self
            .built
            .load_full()
            .filter(|b| b.generation == cert.generation)
        {
            return Some(b);
        }
        match build(&cert) {
            Ok(b) => {
                let b = Arc::new(b);
                self.built.store(Some(b.clone()));
                Some(b)
            }
            Err(error) => {
                tracing::error!(%error, generation = cert.generation, "cannot use the workload certificate for TLS");
                None
            }
        }
    }
}

fn build(cert: &Certified) -> Result<Built, TlsError> {
    let pem = |e: rustls::pki_types::pem::Error| TlsError::Pem(e.to_string());
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.leaf_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(pem)?;
    for c in CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes()) {
        chain.push(c.map_err(pem)?);
    }
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).map_err(pem)?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert.trust_bundle_pem.as_bytes()) {
        roots.add(c.map_err(pem)?)?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    server.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec(), ALPN_TCP.to_vec()];
    Ok(Built {
        generation: cert.generation,
        provider,
        roots,
        chain,
        key: Arc::new(key),
        server: Arc::new(server),
    })
}
