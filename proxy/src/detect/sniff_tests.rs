use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;

use super::sniff::{classify, Sniff, H2_PREFACE};
use super::DETECT_BUFFER;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn tls(sni: Option<&str>) -> Sniff {
    Sniff::Tls {
        sni: sni.map(str::to_owned),
    }
}

/// The first record a real TLS client (rustls) sends for `server_name`.
async fn rustls_client_hello(server_name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let handshake = tokio::spawn(async move { connector.connect(name, client).await });
    // The whole record, however many writes it took.
    let mut record = vec![0u8; 5];
    server.read_exact(&mut record).await.unwrap();
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    record.resize(5 + len, 0);
    server.read_exact(&mut record[5..]).await.unwrap();
    handshake.abort();
    record
}

fn be16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap().to_be_bytes()
}

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend(be16(data.len()));
    out.extend_from_slice(data);
    out
}

fn sni_extension(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0x00]; // host_name
    entry.extend(be16(name.len()));
    entry.extend_from_slice(name);
    let mut list = be16(entry.len()).to_vec();
    list.extend(entry);
    extension(0x0000, &list)
}

fn padding_extension(len: usize) -> Vec<u8> {
    extension(0x0015, &vec![0; len])
}

/// A minimal ClientHello record with these extensions.
fn hello_record(message_type: u8, extensions: &[u8]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([7u8; 32]); // random
    body.push(0); // empty session id
    body.extend([0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend([0x01, 0x00]); // null compression
    body.extend(be16(extensions.len()));
    body.extend_from_slice(extensions);
    let mut handshake = vec![message_type];
    handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(be16(handshake.len()));
    record.extend(handshake);
    record
}

fn hello_with_name(name: &[u8]) -> Vec<u8> {
    hello_record(0x01, &sni_extension(name))
}

#[test]
fn the_h2_preface_is_h2_and_its_prefixes_need_more() {
    let mut preface = H2_PREFACE.to_vec();
    preface.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    assert_eq!(classify(&preface), Sniff::H2);
    for len in 0..H2_PREFACE.len() {
        assert_eq!(classify(&H2_PREFACE[..len]), Sniff::NeedMore, "{len} bytes");
    }
}

#[test]
fn a_method_and_a_space_is_http1_and_their_prefixes_need_more() {
    for method in METHODS {
        let request = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(classify(request.as_bytes()), Sniff::Http1, "{method}");
        for len in 0..=method.len() {
            assert_eq!(classify(&request.as_bytes()[..len]), Sniff::NeedMore);
        }
        assert_eq!(classify(&request.as_bytes()[..=method.len()]), Sniff::Http1);
    }
}

#[test]
fn pri_without_the_h2_preface_is_opaque() {
    assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Sniff::Opaque);
    assert_eq!(classify(b"PRI "), Sniff::NeedMore);
}

#[test]
fn other_protocols_are_opaque_on_their_first_distinguishing_byte() {
    assert_eq!(classify(b"GETX"), Sniff::Opaque);
    assert_eq!(classify(b"get / HTTP/1.1\r\n"), Sniff::Opaque);
    assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), Sniff::Opaque); // Redis
    assert_eq!(classify(b"SSH-2.0-OpenSSH_9.6\r\n"), Sniff::Opaque);
    assert_eq!(classify(&[0, 0, 0, 8, 4, 210, 22, 47]), Sniff::Opaque); // Postgres SSLRequest
    assert_eq!(classify(b"X"), Sniff::Opaque);
    assert_eq!(classify(b"GX"), Sniff::Opaque);
    assert_eq!(classify(&[0x16, 0x01]), Sniff::Opaque); // not a TLS version
}

#[tokio::test]
async fn a_real_client_hello_is_tls_with_its_server_name() {
    let hello = rustls_client_hello("redis.default.svc").await;
    assert!(hello.len() < DETECT_BUFFER, "{} bytes", hello.len());
    assert_eq!(classify(&hello), tls(Some("redis.default.svc")));
    for len in 0..hello.len() {
        assert_eq!(classify(&hello[..len]), Sniff::NeedMore, "{len} bytes");
    }
}

#[test]
fn a_server_name_is_kept_only_if_it_is_a_dns_name() {
    assert_eq!(
        classify(&hello_with_name(b"Web.Prod.svc")),
        tls(Some("web.prod.svc"))
    );
    let too_long = vec![b'a'; 254];
    let bad_names: [&[u8]; 5] = [
        b"",
        b"under_score.svc",
        b"caf\xc3\xa9.fr",
        b"a b",
        &too_long,
    ];
    for bad in bad_names {
        assert_eq!(classify(&hello_with_name(bad)), tls(None), "{bad:?}");
    }
    let longest = vec![b'a'; 253];
    assert!(matches!(
        classify(&hello_with_name(&longest)),
        Sniff::Tls { sni: Some(_) }
    ));
}

#[test]
fn a_hello_without_a_server_name_or_not_a_hello_is_tls_without_one() {
    assert_eq!(classify(&hello_record(0x01, &[])), tls(None));
    assert_eq!(
        classify(&hello_record(0x01, &padding_extension(10))),
        tls(None)
    );
    let server_hello = hello_record(0x02, &sni_extension(b"a.svc"));
    assert_eq!(classify(&server_hello), tls(None));
    assert_eq!(classify(&[0x16, 0x03, 0x01, 0x00, 0x00]), tls(None));
}

#[test]
fn a_record_longer_than_the_buffer_is_read_as_far_as_the_buffer_goes() {
    let mut name_first = sni_extension(b"db.prod.svc");
    name_first.extend(padding_extension(6000));
    let record = hello_record(0x01, &name_first);
    assert!(record.len() > DETECT_BUFFER);
    assert_eq!(classify(&record[..DETECT_BUFFER - 1]), Sniff::NeedMore);
    assert_eq!(classify(&record[..DETECT_BUFFER]), tls(Some("db.prod.svc")));

    let mut name_last = padding_extension(6000);
    name_last.extend(sni_extension(b"db.prod.svc"));
    let record = hello_record(0x01, &name_last);
    assert_eq!(classify(&record[..DETECT_BUFFER]), tls(None));
    assert_eq!(classify(&record), tls(Some("db.prod.svc")));
}

#[tokio::test]
async fn no_input_panics() {
    let real = rustls_client_hello("redis.default.svc").await;
    let samples = [
        H2_PREFACE.to_vec(),
        b"OPTIONS * HTTP/1.1\r\n".to_vec(),
        hello_with_name(b"a.b.c"),
        real.clone(),
    ];
    for sample in &samples {
        for len in 0..=sample.len() {
            let _ = classify(&sample[..len]);
        }
    }
    // Every byte of a real hello (so every length field) set too short and too
    // long, complete and cut off by the buffer's size.
    for i in 0..real.len() {
        for value in [0x00, 0x01, 0x7f, 0xff] {
            let mut mutated = real.clone();
            mutated[i] = value;
            let _ = classify(&mutated);
            mutated.resize(DETECT_BUFFER, 0);
            let _ = classify(&mutated);
        }
    }
    // And noise behind record and ClientHello headers (xorshift: deterministic).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..2000 {
        let mut noise = vec![0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c];
        for _ in 0..60 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.push(state.to_le_bytes()[0]);
        }
        for len in 0..=noise.len() {
            let _ = classify(&noise[..len]);
        }
    }
}
