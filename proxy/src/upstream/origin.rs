//! Ordinary TLS to servers outside the mesh (a Service's static endpoints, as its
//! cluster's `UpstreamTlsContext` says): the server is verified by DNS name against
//! the given roots or the system's bundle; the proxy presents no certificate.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::uri::Authority;
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::telemetry::tcp::{Counted, TCP};

/// What identifies an origin's TLS settings (endpoints are shared by it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginTls {
    pub server_name: String,
    /// PEM roots; `None`: the system bundle.
    pub ca_pem: Option<String>,
    /// The ALPN protocol to offer (`h2` or `http/1.1`).
    pub alpn: &'static [u8],
}

/// An origin's settings with the client config made from them.
pub struct OriginClient {
    pub tls: OriginTls,
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for OriginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginClient")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Where the system's CA bundle may be (as Go and OpenSSL look for it); the
/// `SSL_CERT_FILE` environment variable comes first.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let candidates = std::env::var("SSL_CERT_FILE")
                .ok()
                .into_iter()
                .chain(SYSTEM_BUNDLES.iter().map(|s| s.to_string()));
            for path in candidates {
                let Ok(pem) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let mut roots = RootCertStore::empty();
                // A system bundle may hold a certificate rustls cannot use; skip it.
                let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok);
                let (added, _) = roots.add_parsable_certificates(certs);
                if added > 0 {
                    tracing::debug!(%path, roots = added, "system CA bundle loaded");
                    return Ok(Arc::new(roots));
                }
            }
            Err(format!(
                "no CA certificates given and no system bundle found (SSL_CERT_FILE, {})",
                SYSTEM_BUNDLES.join(", ")
            ))
        })
        .clone()
}

impl OriginClient {
    /// Builds the client config; the error says what is wrong with the settings.
    pub fn new(tls: OriginTls) -> Result<Self, String> {
        let roots = match &tls.ca_pem {
            None => system_roots()?,
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let c = c.map_err(|e| format!("trusted_ca is not valid PEM: {e}"))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("trusted_ca holds an unusable certificate: {e}"))?;
                }
                if roots.is_empty() {
                    return Err("trusted_ca holds no certificate".into());
                }
                Arc::new(roots)
            }
        };
        let server_name = ServerName::try_from(tls.server_name.clone())
            .map_err(|_| format!("`{}` is not a DNS name", tls.server_name))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // TLS 1.2 too: servers outside the mesh are not all on 1.3.
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![tls.alpn.to_vec()];
        Authority::try_from(tls.server_name.as_str())
            .map_err(|_| format!("`{}` is not a valid authority", tls.server_name))?;
        Ok(Self {
            tls,
            config: Arc::new(config),
            server_name,
        })
    }

    /// What requests to the origin at `port` carry as `Host` / `:authority`.
    pub fn authority(&self, port: u16) -> Authority {
        let text = if port == 443 {
            self.tls.server_name.clone()
        } else {
            format!("{}:{port}", self.tls.server_name)
        };
        // Checked in `new`: a DNS name with a port is an authority.
        Authority::try_from(text).unwrap_or_else(|_| Authority::from_static("invalid"))
    }

    pub async fn connect<S>(&self, tcp: S) -> io::Result<TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let result = TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await;
        if let Err(error) = &result {
            tracing::warn!(server_name = %self.tls.server_name, %error, "TLS to origin failed");
        }
        result
    }
}

/// The HTTP/1.1 pool's connector for an origin: TCP (with the pool's timeouts),
/// then TLS.
#[derive(Clone)]
pub struct OriginConnector {
    pub http: HttpConnector,
    pub origin: Arc<OriginClient>,
}

impl tower::Service<Uri> for OriginConnector {
    type Response = OriginConnection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<OriginConnection>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tower::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(io::Error::other)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = tower::Service::call(&mut self.http, uri);
        let origin = self.origin.clone();
        Box::pin(async move {
            let tcp = connecting.await.map_err(io::Error::other)?.into_inner();
            let tls = origin.connect(Counted::new(tcp, &TCP.outbound_dst)).await?;
            Ok(OriginConnection(TokioIo::new(tls)))
        })
    }
}

/// A TLS connection in the HTTP/1.1 pool.
pub struct OriginConnection(TokioIo<TlsStream<Counted<TcpStream>>>);

impl Connection for OriginConnection {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for OriginConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for OriginConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
