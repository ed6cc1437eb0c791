//! gRPC channels to the control plane, over TLS when the proxy can verify it.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// The SNI sent to the control plane. The certificate is verified by SPIFFE id
/// (see [`super::SpiffeServerVerifier`]); DNS names play no part.
const SERVER_NAME: &str = "remora-control";

/// Connects `endpoint` (whose URI names `addr`) in plaintext, or with TLS under
/// `tls`.
pub async fn connect(
    endpoint: Endpoint,
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
) -> Result<Channel, tonic::transport::Error> {
    let Some(config) = tls else {
        return endpoint.connect().await;
    };
    let connector = tower::service_fn(move |_uri| {
        let config = config.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME).map_err(std::io::Error::other)?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    endpoint.connect_with_connector(connector).await
}

/// The TLS error that ended a connection attempt, when it was the handshake
/// (a certificate that did not verify, most often): found among `error`'s
/// causes, where tokio-rustls leaves it inside an `io::Error`.
pub fn handshake_failure<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // `io::Error::source` skips the error it wraps: look inside.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if inner.is_some() {
            return inner;
        }
        cause = e.source();
    }
    None
}

/// `error` and its causes, outermost first, joined with ": " (tonic's own
/// message is only "transport error").
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        // An io::Error often wraps an error that says the same thing: once.
        let said = e.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as tonic wraps its connector's.
    #[derive(Debug)]
    struct Wrapper(Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_certificate_that_did_not_verify_is_found_under_the_transport_error() {
        let rejected = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rejected);
        let error = Wrapper(Box::new(io));
        assert_eq!(
            handshake_failure(&error),
            Some(&rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
        let refused = Wrapper(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(handshake_failure(&refused), None);
        assert_eq!(causes(&refused), "transport error: connection refused");
        // An io::Error that wraps an error saying the same is said once.
        let os = std::io::Error::from_raw_os_error(111);
        let wrapped = Wrapper(Box::new(std::io::Error::new(os.kind(), os)));
        let text = causes(&wrapped);
        assert_eq!(text.matches("os error 111").count(), 1, "{text}");
    }
}
