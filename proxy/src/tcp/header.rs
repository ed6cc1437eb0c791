//! The transport header of an opaque TCP connection between proxies.
//!
//! A client proxy connects to the server proxy's inbound port with mTLS and ALPN
//! [`ALPN`]; right after the handshake it sends this header, saying which of the
//! server's app ports the connection is for (the inbound listener sees only its
//! own port). Then the bytes of the connection follow, untouched.
//!
//! Format, 6 bytes: the magic `RMT1` (so a stray client or a version mismatch is
//! refused, not forwarded), then the port, big-endian. Fixed-size: read with one
//! `read_exact`, never a byte of the payload.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The ALPN protocol of an opaque TCP connection between proxies.
pub const ALPN: &[u8] = b"remora-tcp/1";

pub const MAGIC: [u8; 4] = *b"RMT1";

/// Bytes in the header.
pub const LEN: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("transport header: magic {0:02x?} is not RMT1")]
    BadMagic([u8; 4]),
    #[error("transport header: port 0")]
    ZeroPort,
    #[error("transport header: not received within {0:?}")]
    Timeout(Duration),
    #[error("transport header: {0}")]
    Io(#[from] io::Error),
}

pub fn encode(port: u16) -> [u8; LEN] {
    let [hi, lo] = port.to_be_bytes();
    let [m0, m1, m2, m3] = MAGIC;
    [m0, m1, m2, m3, hi, lo]
}

/// The port a header names.
pub fn decode(header: [u8; LEN]) -> Result<u16, HeaderError> {
    let [m0, m1, m2, m3, hi, lo] = header;
    let magic = [m0, m1, m2, m3];
    if magic != MAGIC {
        return Err(HeaderError::BadMagic(magic));
    }
    match u16::from_be_bytes([hi, lo]) {
        0 => Err(HeaderError::ZeroPort),
        port => Ok(port),
    }
}

/// Reads the header, giving up after `timeout` so a peer that completes the
/// handshake and then says nothing does not hold the connection open. A header
/// cut short by end-of-stream is an `Io` error of kind `UnexpectedEof`.
pub async fn read<T: AsyncRead + Unpin>(io: &mut T, timeout: Duration) -> Result<u16, HeaderError> {
    let mut header = [0u8; LEN];
    match tokio::time::timeout(timeout, io.read_exact(&mut header)).await {
        Err(_elapsed) => Err(HeaderError::Timeout(timeout)),
        Ok(read) => {
            read?;
            decode(header)
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::time::Instant;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn encodes_the_magic_then_the_port_big_endian() {
        assert_eq!(encode(6379), *b"RMT1\x18\xeb");
        assert_eq!(decode(encode(6379)).unwrap(), 6379);
        assert_eq!(decode(encode(u16::MAX)).unwrap(), u16::MAX);
    }

    #[tokio::test]
    async fn reads_the_header_and_not_a_byte_more() {
        let (mut peer, mut io) = tokio::io::duplex(64);
        peer.write_all(&encode(5432)).await.unwrap();
        peer.write_all(b"payload").await.unwrap();
        assert_eq!(read(&mut io, TIMEOUT).await.unwrap(), 5432);
        let mut rest = [0u8; 7];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"payload");
    }

    #[tokio::test]
    async fn a_wrong_magic_or_port_zero_is_refused() {
        let (mut peer, mut io) = tokio::io::duplex(64);
        peer.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let err = read(&mut io, TIMEOUT).await.unwrap_err();
        assert!(
            matches!(err, HeaderError::BadMagic(m) if &m == b"GET "),
            "{err}"
        );

        assert!(matches!(decode(*b"RMT1\0\0"), Err(HeaderError::ZeroPort)));
        assert!(matches!(
            decode(*b"RMT2\0\x50"),
            Err(HeaderError::BadMagic(_))
        ));
    }

    #[tokio::test]
    async fn a_truncated_header_is_an_unexpected_end() {
        let (mut peer, mut io) = tokio::io::duplex(64);
        peer.write_all(&encode(80)[..3]).await.unwrap();
        drop(peer);
        let err = read(&mut io, TIMEOUT).await.unwrap_err();
        assert!(
            matches!(&err, HeaderError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (mut peer, mut io) = tokio::io::duplex(64);
        peer.write_all(&encode(80)[..5]).await.unwrap();
        let started = Instant::now();
        let err = read(&mut io, TIMEOUT).await.unwrap_err();
        assert!(
            matches!(err, HeaderError::Timeout(t) if t == TIMEOUT),
            "{err}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= TIMEOUT && waited < TIMEOUT + Duration::from_millis(1),
            "{waited:?}"
        );
        drop(peer);
    }
}
