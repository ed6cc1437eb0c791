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
