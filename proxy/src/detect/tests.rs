use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads exactly `expected.len()` bytes and compares them.
async fn assert_reads(io: &mut Prefixed<DuplexStream>, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    io.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_opaque_after_exactly_the_timeout_and_loses_nothing() {
    let (mut client, server) = tokio::io::duplex(64);
    let started = Instant::now();
    let mut detected = detect(server, TIMEOUT).await.unwrap();
    // Paused time moves in whole milliseconds, the timer's resolution.
    let waited = started.elapsed();
    assert!(
        waited >= TIMEOUT && waited < TIMEOUT + Duration::from_millis(1),
        "{waited:?}"
    );
    assert_eq!(detected.protocol, Protocol::Opaque(OpaqueReason::Timeout));
    assert_eq!(detected.protocol.label(), "timeout");

    client.write_all(b"220 later").await.unwrap();
    assert_reads(&mut detected.io, b"220 later").await;
}

#[tokio::test(start_paused = true)]
async fn a_method_split_across_writes_is_http1_and_every_byte_is_replayed() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"GE").await.unwrap();
    let detecting = tokio::spawn(detect(server, TIMEOUT));
    // Lets detection read "GE" alone and wait for more.
    tokio::time::sleep(Duration::from_millis(10)).await;
    client.write_all(b"T / HTTP/1.1\r\n").await.unwrap();
    let mut detected = detecting.await.unwrap().unwrap();
    assert_eq!(detected.protocol, Protocol::Http1);
    assert_reads(&mut detected.io, b"GET / HTTP/1.1\r\n").await;

    client.write_all(b"Host: a\r\n").await.unwrap();
    assert_reads(&mut detected.io, b"Host: a\r\n").await;
}

#[tokio::test(start_paused = true)]
async fn the_h2_preface_is_h2() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut sent = H2_PREFACE.to_vec();
    sent.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    client.write_all(&sent).await.unwrap();
    let mut detected = detect(server, TIMEOUT).await.unwrap();
    assert_eq!(detected.protocol, Protocol::H2);
    assert_reads(&mut detected.io, &sent).await;
}

#[tokio::test(start_paused = true)]
async fn a_tls_record_is_tls() {
    let (mut client, server) = tokio::io::duplex(64);
    client
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x00])
        .await
        .unwrap();
    let detected = detect(server, TIMEOUT).await.unwrap();
    assert_eq!(detected.protocol, Protocol::Tls { sni: None });
    assert_eq!(detected.protocol.label(), "tls");
}

#[tokio::test(start_paused = true)]
async fn garbage_is_opaque_not_http_at_once() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"\x00\x01binary").await.unwrap();
    let started = Instant::now();
    let mut detected = detect(server, TIMEOUT).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(detected.protocol, Protocol::Opaque(OpaqueReason::NotHttp));
    assert_eq!(detected.protocol.label(), "opaque");
    assert_reads(&mut detected.io, b"\x00\x01binary").await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_closes_early_is_opaque_closed() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"GE").await.unwrap();
    client.shutdown().await.unwrap();
    let mut detected = detect(server, TIMEOUT).await.unwrap();
    assert_eq!(detected.protocol, Protocol::Opaque(OpaqueReason::Closed));
    let mut all = Vec::new();
    detected.io.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"GE");
}

#[test]
fn labels_and_reasons() {
    let reasons = [
        (OpaqueReason::Declared, "declared", "opaque"),
        (OpaqueReason::NotHttp, "not_http", "opaque"),
        (OpaqueReason::Timeout, "timeout", "timeout"),
        (OpaqueReason::Closed, "closed", "opaque"),
    ];
    for (reason, text, label) in reasons {
        assert_eq!(reason.reason(), text);
        assert_eq!(Protocol::Opaque(reason).label(), label);
        assert!(OUTCOMES.contains(&label));
    }
    assert_eq!(Protocol::Http1.label(), "http1");
    assert_eq!(Protocol::H2.label(), "h2");
}
