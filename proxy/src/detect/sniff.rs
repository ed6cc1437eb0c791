//! What the first bytes of a connection are: HTTP/1, HTTP/2 with prior
//! knowledge, a TLS ClientHello (with its SNI), or something else.
//!
//! Pure: bytes in, a verdict out, so it is tested (and fuzzed) without IO. It
//! reads only what a client sends first; it never decides on a server-first
//! protocol (the caller's timeout does). Bytes from the network are untrusted:
//! every length is bounds-checked, and a malformed ClientHello is still TLS, only
//! without a name.

use super::DETECT_BUFFER;

/// The verdict on the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    Http1,
    H2,
    /// A ClientHello; `sni` is its server name when it carries a valid DNS name
    /// within the bytes we can read.
    Tls {
        sni: Option<String>,
    },
    /// None of the above, decided on the first bytes that rule them all out.
    Opaque,
    /// Still a prefix of something we recognise: read more.
    NeedMore,
}

/// The HTTP/2 connection preface a client with prior knowledge sends.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1 request lines start with one of these and a space. "PRI" is not one:
/// it starts the HTTP/2 preface.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
];

/// TLS record content type of a handshake.
const HANDSHAKE_RECORD: u8 = 0x16;
/// Every TLS and SSL 3 record version has major 3.
const TLS_MAJOR: u8 = 0x03;
const CLIENT_HELLO: u8 = 0x01;
const SERVER_NAME_EXTENSION: u16 = 0x0000;
const HOST_NAME: u8 = 0x00;
/// The longest DNS name in text form.
const MAX_DNS_NAME: usize = 253;

/// The verdict on `buf`, the first bytes of a connection: at most
/// [`DETECT_BUFFER`] of them, since a TLS record is judged on what that holds.
pub fn classify(buf: &[u8]) -> Sniff {
    match buf.first() {
        None => Sniff::NeedMore,
        Some(&HANDSHAKE_RECORD) => tls(buf),
        Some(_) => plaintext(buf),
    }
}

fn plaintext(buf: &[u8]) -> Sniff {
    if buf.starts_with(H2_PREFACE) {
        return Sniff::H2;
    }
    if METHODS.iter().any(|m| buf.starts_with(m)) {
        return Sniff::Http1;
    }
    let could_become = |known: &[u8]| known.starts_with(buf);
    if could_become(H2_PREFACE) || METHODS.iter().copied().any(could_become) {
        return Sniff::NeedMore;
    }
    Sniff::Opaque
}

/// A handshake record: wait for the whole record (or as much of it as the
/// detection buffer holds), then look for the server name.
fn tls(buf: &[u8]) -> Sniff {
    match buf.get(1) {
        None => return Sniff::NeedMore,
        Some(&TLS_MAJOR) => {}
        Some(_) => return Sniff::Opaque,
    }
    let Some((header, rest)) = buf.split_first_chunk::<5>() else {
        return Sniff::NeedMore;
    };
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if rest.len() < len && buf.len() < DETECT_BUFFER {
        return Sniff::NeedMore;
    }
    // A record longer than the buffer is read as far as the buffer goes: the
    // name is usually near the start of the extensions.
    let record = rest.get(..len).unwrap_or(rest);
    Sniff::Tls {
        sni: server_name(record),
    }
}

/// The SNI host name of a ClientHello handshake message (RFC 8446 4.1.2,
/// RFC 6066 3), or `None` if it has none, is malformed, or is cut off before it.
fn server_name(record: &[u8]) -> Option<String> {
    let mut r = Reader(record);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let len = r.u24()?;
    // The outer lengths may run past what we read; the name may still be in.
    let mut hello = r.take_up_to(len);
    hello.take(2 + 32)?; // legacy_version, random
    hello.bytes8()?; // legacy_session_id
    hello.bytes16()?; // cipher_suites
    hello.bytes8()?; // legacy_compression_methods
    let extensions_len = usize::from(hello.u16()?);
    let mut extensions = hello.take_up_to(extensions_len);
    loop {
        let kind = extensions.u16()?;
        let data = extensions.bytes16()?;
        if kind == SERVER_NAME_EXTENSION {
            return host_name(data);
        }
    }
}

/// The host_name entry of a server_name extension's list.
fn host_name(extension: &[u8]) -> Option<String> {
    let mut list = Reader(Reader(extension).bytes16()?);
    loop {
        let kind = list.u8()?;
        let name = list.bytes16()?;
        if kind == HOST_NAME {
            return dns_name(name);
        }
    }
}

/// The name if it is a plausible DNS name, lowercased (names compare without
/// case, and routing looks them up as lowercase).
fn dns_name(name: &[u8]) -> Option<String> {
    let valid_byte = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.';
    if name.is_empty() || name.len() > MAX_DNS_NAME || !name.iter().all(valid_byte) {
        return None;
    }
    std::str::from_utf8(name).ok().map(str::to_ascii_lowercase)
}

/// A cursor over untrusted bytes: every read is checked, `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// Up to `n` bytes: all that is left if fewer.
    fn take_up_to(&mut self, n: usize) -> Reader<'a> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        Reader(head)
    }

    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let (&b, rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some(u16::from_be_bytes(b))
    }

    fn u24(&mut self) -> Option<usize> {
        let (&[a, b, c], rest) = self.0.split_first_chunk::<3>()?;
        self.0 = rest;
        Some((usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c))
    }

    /// A vector with a one-byte length.
    fn bytes8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length.
    fn bytes16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}
