//! Who is at the other end of an xDS connection, as the transport established it.

use std::net::SocketAddr;

/// In the extensions of every gRPC request on the xDS port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XdsPeer {
    pub remote: Option<SocketAddr>,
    /// The SPIFFE id of the verified client certificate; `None` for plaintext or
    /// TLS without a client certificate.
    pub identity: Option<String>,
    pub tls: bool,
}

impl XdsPeer {
    pub fn transport(&self) -> &'static str {
        match (self.tls, self.identity.is_some()) {
            (true, true) => "mtls",
            (true, false) => "tls",
            (false, _) => "plaintext",
        }
    }
}
