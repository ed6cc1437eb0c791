use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf,
};
use tokio::time::Instant;

use super::copy::{forward, End};

const IDLE: Duration = Duration::from_secs(10);

/// The client app, the proxy's two sides, the server app.
fn connections() -> (DuplexStream, DuplexStream, DuplexStream, DuplexStream) {
    let (client, client_side) = duplex(1024);
    let (server_side, server) = duplex(1024);
    (client, client_side, server_side, server)
}

/// An IO whose reads fail; writes succeed.
struct Broken(io::ErrorKind);

impl AsyncRead for Broken {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.0.into()))
    }
}

impl AsyncWrite for Broken {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn bytes_flow_both_ways_and_are_counted() {
    let (mut client, client_side, server_side, mut server) = connections();
    let forwarding = tokio::spawn(forward(client_side, server_side, IDLE));

    client.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    server.write_all(b"world!!").await.unwrap();
    let mut got = [0u8; 7];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"world!!");

    drop(client);
    drop(server);
    let forwarded = forwarding.await.unwrap();
    assert_eq!((forwarded.sent, forwarded.received), (5, 7));
    assert_eq!(forwarded.end, End::Closed);
}

#[tokio::test]
async fn a_half_closed_client_still_gets_the_reply() {
    let (mut client, client_side, server_side, mut server) = connections();
    let forwarding = tokio::spawn(forward(client_side, server_side, IDLE));

    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    // The server sees the request, then end-of-stream: the half-close passed on.
    let mut request = Vec::new();
    server.read_to_end(&mut request).await.unwrap();
    assert_eq!(request, b"request");

    server.write_all(b"reply").await.unwrap();
    server.shutdown().await.unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"reply");

    let forwarded = forwarding.await.unwrap();
    assert_eq!((forwarded.sent, forwarded.received), (7, 5));
    assert_eq!(forwarded.end, End::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_ends_after_the_idle_timeout() {
    let (_client, client_side, server_side, _server) = connections();
    let started = Instant::now();
    let forwarded = forward(client_side, server_side, IDLE).await;
    // Paused time moves in whole milliseconds, the timer's resolution.
    let waited = started.elapsed();
    assert!(
        waited >= IDLE && waited < IDLE + Duration::from_millis(1),
        "{waited:?}"
    );
    assert_eq!(forwarded.end, End::IdleTimeout);
    assert_eq!((forwarded.sent, forwarded.received), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn traffic_every_half_period_keeps_it_open() {
    let (mut client, client_side, server_side, _server) = connections();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(IDLE / 2).await;
            client.write_all(b"x").await.unwrap();
        }
        client
    });
    let forwarded = forward(client_side, server_side, IDLE).await;
    let _client = writer.await.unwrap();

    assert_eq!(forwarded.end, End::IdleTimeout);
    assert_eq!(forwarded.sent, 5, "ended while bytes were still moving");
    // Ends one idle period after the last byte, give or take one check.
    let last_byte = IDLE / 2 * 5;
    let waited = started.elapsed();
    assert!(waited >= last_byte + IDLE, "{waited:?}");
    assert!(waited <= last_byte + IDLE + IDLE / 4, "{waited:?}");
}

#[tokio::test]
async fn a_client_error_ends_it_as_a_client_reset() {
    let (_client, _, server_side, _server) = connections();
    let broken = Broken(io::ErrorKind::ConnectionReset);
    let forwarded = forward(broken, server_side, IDLE).await;
    assert_eq!(
        forwarded.end,
        End::ClientReset(io::ErrorKind::ConnectionReset)
    );
    assert_eq!(forwarded.end.label(), "client_reset");
}

#[tokio::test]
async fn a_server_error_ends_it_as_a_server_reset() {
    let (_client, client_side, _, _server) = connections();
    let broken = Broken(io::ErrorKind::ConnectionReset);
    let forwarded = forward(client_side, broken, IDLE).await;
    assert_eq!(
        forwarded.end,
        End::ServerReset(io::ErrorKind::ConnectionReset)
    );
}

#[tokio::test]
async fn a_write_to_a_gone_server_ends_it_as_a_server_reset() {
    let (mut client, client_side, server_side, server) = connections();
    client.write_all(b"x").await.unwrap();
    drop(server);
    let forwarded = forward(client_side, server_side, IDLE).await;
    assert_eq!(forwarded.end, End::ServerReset(io::ErrorKind::BrokenPipe));
    assert_eq!(forwarded.sent, 0);
}
