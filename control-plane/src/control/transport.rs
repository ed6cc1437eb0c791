//! The xDS port's transport. A proxy that holds a certificate connects with mTLS,
//! so the control plane knows its identity from the certificate rather than from
//! what it declares; TLS without a client certificate serves a proxy's first
//! Certify call when its bootstrap carries the trust bundle; plaintext (told apart
//! by the first byte) serves the first Certify call otherwise and proxies without
//! an identity.
//!
//! The control plane's own certificate comes from its CA
//! ([`crate::ca::ServingCert`]), for
//! `spiffe://<trust-domain>/ns/<namespace>/sa/remora-control`
//! ([`control_plane_identity`]: what Remora proxies check), and is renewed in
//! memory at half its lifetime. It also carries DNS and IP names
//! ([`serving_hosts`]): gRPC's own xDS client checks the control plane by the
//! host it dialled, as TLS clients do.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use remora_net::{Activity, IdleTimeout, Slot, Slots};

use super::ControlOptions;
use crate::ca::serving::HANDSHAKE_TIMEOUT;
use crate::ca::{
    CertificateAuthority, HostName, InvalidSpiffeId, ServingCert, ServingError, SpiffeId,
};
use crate::xds::XdsPeer;

pub use crate::ca::serving::{CONTROL_PLANE_ACCOUNT, CONTROL_PLANE_NAMESPACE};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Serving(#[from] ServingError),
    #[error("the control plane's identity in namespace `{namespace}`")]
    Identity {
        namespace: String,
        #[source]
        source: InvalidSpiffeId,
    },
    #[error("the trust bundle of the xDS client verifier: {0}")]
    TrustBundle(String),
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The control plane's namespace: the cluster's `--namespace` in Kubernetes
/// mode; outside a cluster, `remora-system` (what proxies outside a cluster
/// expect).
pub fn control_plane_namespace(options: &ControlOptions) -> &str {
    options
        .kubernetes
        .as_ref()
        .map_or(CONTROL_PLANE_NAMESPACE, |k| k.namespace.as_str())
}

/// The control plane's SPIFFE id: the xDS and the webhook certificates carry
/// it, and no proxy is ever issued it.
pub fn control_plane_identity(options: &ControlOptions) -> Result<SpiffeId, TransportError> {
    let namespace = control_plane_namespace(options);
    crate::ca::control_plane_identity(&options.trust_domain, namespace).map_err(|source| {
        TransportError::Identity {
            namespace: namespace.to_owned(),
            source,
        }
    })
}

/// The DNS and IP names of the control plane's serving certificate:
/// `localhost`; the address xDS is bound to, or both loopback addresses when
/// that is loopback or unspecified (0.0.0.0, ::), so a client on the machine
/// may dial either; then the operator's `--xds-server-name`s. Once each, in
/// that order.
pub fn serving_hosts(bound: SocketAddr, extra: &[HostName]) -> Vec<HostName> {
    let mut hosts = vec![HostName::localhost()];
    let ip = bound.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        hosts.push(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        hosts.push(IpAddr::V6(Ipv6Addr::LOCALHOST).into());
    }
    if !ip.is_unspecified() {
        hosts.push(ip.into());
    }
    for host in extra {
        hosts.push(host.clone());
    }
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    hosts
}

/// The TLS side of the xDS port: its config and its certificate (renewed by
/// a task that stops when this is dropped).
pub struct XdsTls {
    config: Arc<ServerConfig>,
    _cert: ServingCert,
}

impl XdsTls {
    /// A certificate for `identity` (the control plane's) and `hosts` (see
    /// [`serving_hosts`]).
    pub fn new(
        ca: Arc<CertificateAuthority>,
        identity: SpiffeId,
        ttl: Duration,
        hosts: Vec<HostName>,
    ) -> Result<Self, TransportError> {
        let cert = ServingCert::start(ca.clone(), identity, hosts, ttl, "xDS")?;
        let provider = cert.provider();
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.trust_bundle_pem().as_bytes()) {
            let c = c.map_err(|e| TransportError::TrustBundle(e.to_string()))?;
            roots.add(c)?;
        }
        // A client certificate is optional: a proxy asks for its first certificate
        // without one.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(cert.resolver());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            _cert: cert,
        })
    }
}

/// One accepted xDS connection; it holds a slot of the listener until closed.
pub struct XdsConnection {
    io: IdleTimeout<Io>,
    peer: XdsPeer,
    _slot: Slot,
}

/// A connection with no byte for this long is closed: an ADS stream carries
/// HTTP/2 keepalive pings every 15 s (see `control`), so only a client that
/// speaks nothing is cut.
pub const XDS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Accepts connections and completes their handshakes off the accept loop, so a
/// slow client delays nobody. Over `max_connections` open connections, a new
/// one is closed at once. Ends when the listener fails for good or the
/// receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<XdsTls>,
    max_connections: usize,
) -> ReceiverStream<Result<XdsConnection, io::Error>> {
    let slots = Slots::new(max_connections);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        tracing::warn!(%error, "xDS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let Some(slot) = slots.take() else {
                // A flood of refusals must not become a flood of log lines: the
                // 1st, 2nd, 4th, 8th... are logged, each with the count.
                if slots.refused().is_power_of_two() {
                    tracing::warn!(%remote, limit = slots.max(), refused = slots.refused(), "xDS connection refused: at the connection limit");
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tx, config) = (tx.clone(), tls.config.clone());
            tokio::spawn(async move {
                if let Some(conn) = handshake(stream, remote, config, slot).await {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    config: Arc<ServerConfig>,
    slot: Slot,
) -> Option<XdsConnection> {
    let idle = |io| IdleTimeout::new(io, XDS_IDLE_TIMEOUT, Arc::<Activity>::default());
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    let mut peer = XdsPeer {
        remote: Some(remote),
        ..Default::default()
    };
    // Every TLS connection starts with a handshake record (content type 22).
    if first[0] != 0x16 {
        return Some(XdsConnection {
            io: idle(Io::Plain(stream)),
            peer,
            _slot: slot,
        });
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
        Ok(Ok(tls)) => {
            peer.tls = true;
            peer.identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(spiffe_id);
            tracing::debug!(%remote, identity = peer.identity.as_deref().unwrap_or("none"), "xDS TLS connection");
            Some(XdsConnection {
                io: idle(Io::Tls(Box::new(tls))),
                peer,
                _slot: slot,
            })
        }
        Ok(Err(error)) => {
            tracing::warn!(%remote, %error, "xDS TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::warn!(%remote, "xDS TLS handshake timed out");
            None
        }
    }
}

/// The certificate's SPIFFE id, if it has exactly one `spiffe://` URI SAN.
fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
        _ => None,
    });
    let first = uris.next()?;
    uris.next().is_none().then(|| first.to_owned())
}

impl Connected for XdsConnection {
    type ConnectInfo = XdsPeer;

    fn connect_info(&self) -> XdsPeer {
        self.peer.clone()
    }
}

impl AsyncRead for XdsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for XdsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use x509_parser::certificate::X509Certificate;

    use super::*;

    fn hosts(list: &[&str]) -> Vec<HostName> {
        list.iter().map(|h| h.parse().unwrap()).collect()
    }

    #[test]
    fn the_serving_hosts_are_localhost_loopback_or_the_bound_address_and_the_operators() {
        let at = |addr: &str, extra: &[&str]| serving_hosts(addr.parse().unwrap(), &hosts(extra));
        assert_eq!(
            at("127.0.0.1:7700", &[]),
            hosts(&["localhost", "127.0.0.1", "::1"])
        );
        assert_eq!(
            at("0.0.0.0:7700", &["xds.example.com"]),
            hosts(&["localhost", "127.0.0.1", "::1", "xds.example.com"])
        );
        assert_eq!(
            at("[::]:7700", &[]),
            hosts(&["localhost", "127.0.0.1", "::1"])
        );
        assert_eq!(
            at("10.0.0.5:7700", &["10.0.0.5", "remora.mesh", "localhost"]),
            hosts(&["localhost", "10.0.0.5", "remora.mesh"]),
            "each name once"
        );
    }

    /// Every SAN of `cert`, as `URI:...`, `DNS:...` or `IP:...`.
    fn sans(cert: &CertificateDer<'_>) -> Vec<String> {
        let (_, parsed) = X509Certificate::from_der(cert).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => format!("IP:{}", Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap())),
                    _ => format!("IP:{}", Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap())),
                },
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_control_plane_is_in_the_clusters_namespace_else_in_remora_system() {
        let mut options = ControlOptions::new("config");
        assert_eq!(
            control_plane_identity(&options).unwrap().to_string(),
            "spiffe://cluster.local/ns/remora-system/sa/remora-control"
        );
        options.kubernetes = Some(crate::kubernetes::KubernetesOptions {
            namespace: "mesh".into(),
            ..Default::default()
        });
        assert_eq!(
            control_plane_identity(&options).unwrap().to_string(),
            "spiffe://cluster.local/ns/mesh/sa/remora-control"
        );
    }

    #[tokio::test]
    async fn the_serving_certificate_names_the_control_plane_and_every_host() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(
            CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap(),
        );
        let provider = rustls::crypto::ring::default_provider();
        let hosts = serving_hosts(
            "127.0.0.1:7700".parse().unwrap(),
            &hosts(&["xds.example.com", "10.1.2.3"]),
        );
        let identity = control_plane_identity(&ControlOptions::new("config")).unwrap();
        let cert = ServingCert::start(
            ca.clone(),
            identity,
            hosts,
            Duration::from_secs(3600),
            "xDS",
        )
        .unwrap();
        let chain = cert.chain();
        let leaf = &chain[0];
        let id = "spiffe://cluster.local/ns/remora-system/sa/remora-control";
        assert_eq!(
            sans(leaf),
            [
                format!("URI:{id}"),
                "DNS:localhost".into(),
                "IP:127.0.0.1".into(),
                "IP:::1".into(),
                "DNS:xds.example.com".into(),
                "IP:10.1.2.3".into(),
            ]
        );
        // What Remora proxies check (the same rule as theirs): exactly one
        // SPIFFE id, the control plane's; the other names change nothing.
        assert_eq!(spiffe_id(leaf).as_deref(), Some(id));

        // What a client that checks the host it dialled does (gRPC's TLS).
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.trust_bundle_pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider))
                .build()
                .unwrap();
        let verify = |name: &str| {
            verifier.verify_server_cert(
                leaf,
                &chain[1..],
                &ServerName::try_from(name).unwrap(),
                &[],
                UnixTime::now(),
            )
        };
        for name in [
            "localhost",
            "127.0.0.1",
            "::1",
            "xds.example.com",
            "10.1.2.3",
        ] {
            assert!(verify(name).is_ok(), "{name}: {:?}", verify(name).err());
        }
        for name in ["other.example.com", "10.9.9.9"] {
            assert!(verify(name).is_err(), "{name} is not in the certificate");
        }
    }
}
