//! Protocol detection on an accepted connection: read the first bytes and decide
//! whether they are HTTP/1, HTTP/2 with prior knowledge, TLS (with its SNI), or
//! something to carry as opaque TCP.
//!
//! Detection reads (it does not peek: a peek that finds too few bytes returns at
//! once, and a loop of them spins), so the bytes read travel on with the
//! connection as the prefix of a [`Prefixed`] IO. It gives up after a timeout:
//! a server-first protocol (MySQL, SMTP) sends nothing until the server speaks,
//! so such a connection is forwarded as opaque TCP once the timeout has passed.
//! Ports known to be opaque skip detection altogether ([`OpaquePorts`]).
//!
//! - `sniff`: the verdict on a buffer of first bytes (pure).
//! - `prefixed`: an IO that replays the bytes detection read.
//! - `ports`: declared protocols and the default opaque ports.
//! - `stats`: outcomes per port, for `/metrics`.

mod ports;
mod prefixed;
mod sniff;
mod stats;

#[cfg(test)]
mod sniff_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use ports::{from_app_protocol, Declared, OpaquePorts, DEFAULT_OPAQUE_PORTS};
pub use prefixed::Prefixed;
pub use sniff::{classify, Sniff, H2_PREFACE};
pub use stats::{DetectStats, Direction, MAX_PORTS, OUTCOMES};

/// The most bytes detection reads: a ClientHello fits (its SNI is near the start
/// when it does not), an HTTP request line needs only its method.
pub const DETECT_BUFFER: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2,
    Tls { sni: Option<String> },
    Opaque(OpaqueReason),
}

/// Why a connection is carried as opaque TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpaqueReason {
    /// The port's protocol is known to be opaque: nothing was read.
    Declared,
    /// The bytes were not HTTP or TLS.
    NotHttp,
    /// Nothing recognisable within the detection timeout: e.g. a server-first
    /// protocol.
    Timeout,
    /// The client closed (or half-closed) before sending enough.
    Closed,
}

impl Protocol {
    /// For metrics ([`OUTCOMES`]) and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
            Protocol::Tls { .. } => "tls",
            Protocol::Opaque(OpaqueReason::Timeout) => "timeout",
            Protocol::Opaque(_) => "opaque",
        }
    }

    /// `None` while more bytes are needed.
    fn from_sniff(sniff: Sniff) -> Option<Self> {
        match sniff {
            Sniff::Http1 => Some(Protocol::Http1),
            Sniff::H2 => Some(Protocol::H2),
            Sniff::Tls { sni } => Some(Protocol::Tls { sni }),
            Sniff::Opaque => Some(Protocol::Opaque(OpaqueReason::NotHttp)),
            Sniff::NeedMore => None,
        }
    }
}

impl OpaqueReason {
    /// For the access log.
    pub fn reason(self) -> &'static str {
        match self {
            OpaqueReason::Declared => "declared",
            OpaqueReason::NotHttp => "not_http",
            OpaqueReason::Timeout => "timeout",
            OpaqueReason::Closed => "closed",
        }
    }
}

/// The verdict and the connection, with the bytes read in front of it.
#[derive(Debug)]
pub struct Detected<T> {
    pub protocol: Protocol,
    pub io: Prefixed<T>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("reading the first bytes of the connection: {0}")]
    Io(#[from] io::Error),
}

/// Reads until the first bytes say what the protocol is, the buffer is full,
/// the client closes, or `timeout` passes. Nothing read is lost.
pub async fn detect<T: AsyncRead + Unpin>(
    mut io: T,
    timeout: Duration,
) -> Result<Detected<T>, DetectError> {
    let mut buf = BytesMut::with_capacity(DETECT_BUFFER);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let protocol = loop {
        if let Some(protocol) = Protocol::from_sniff(classify(&buf)) {
            break protocol;
        }
        if buf.len() >= DETECT_BUFFER {
            break when_full(&buf);
        }
        // Never past the cap, whatever the buffer's capacity.
        let room = DETECT_BUFFER - buf.len();
        let mut room = (&mut buf).limit(room);
        let read = tokio::select! {
            biased;
            read = io.read_buf(&mut room) => read?,
            () = &mut deadline => break Protocol::Opaque(OpaqueReason::Timeout),
        };
        if read == 0 {
            break Protocol::Opaque(OpaqueReason::Closed);
        }
    };
    let sni = match &protocol {
        Protocol::Tls { sni } => sni.as_deref(),
        _ => None,
    };
    tracing::debug!(
        protocol = protocol.label(),
        sni,
        bytes = buf.len(),
        "protocol detected"
    );
    Ok(Detected {
        protocol,
        io: Prefixed::new(buf.freeze(), io),
    })
}

/// A full buffer that still needs more: `classify` decides a TLS record at the
/// cap itself, and the longest HTTP prefix is 24 bytes, so this is a guard, not
/// a path taken.
fn when_full(buf: &[u8]) -> Protocol {
    if buf.first() == Some(&0x16) {
        Protocol::Tls { sni: None }
    } else {
        Protocol::Opaque(OpaqueReason::NotHttp)
    }
}
