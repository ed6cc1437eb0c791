//! HTTP/1.1 Upgrade (WebSocket's handshake) through the mesh: the client app's
//! `Upgrade: websocket` request crosses the two proxies (as an extended CONNECT
//! over their mTLS HTTP/2 connection), the server app answers 101, and the
//! connection then carries the apps' bytes both ways.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use remora_tests::harness::{ControlPlane, Proxy, ProxySpec};
use support::{config_dir, mint_token, wait_config, write_config, WEB_AND_ORDERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An app that answers an upgrade request with 101 (echoing a header, as a
/// WebSocket server echoes its key) and then echoes bytes; a request without
/// `Upgrade` gets 426.
async fn upgrade_echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let lower = head.to_ascii_lowercase();
                if !lower.contains("upgrade: websocket") {
                    let _ = s
                        .write_all(b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let key = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("sec-websocket-key: "))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let reply = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: accepted-{key}\r\n\r\n"
                );
                if s.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn websocket_upgrade_crosses_the_mesh_over_mtls() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", WEB_AND_ORDERS);
    let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
    let app = upgrade_echo_app().await;
    let web_app = remora_tests::app::TestApp::http("web");
    let token = |service: &str| {
        let path = root.path().join(format!("{service}.token"));
        std::fs::write(&path, mint_token(&cp.data_dir(), "default", service)).unwrap();
        path
    };
    let orders =
        Proxy::start(ProxySpec::new("orders", cp.xds_addr, app).token_file(&token("orders")))
            .await
            .unwrap();
    orders.wait_ready(Duration::from_secs(10)).await.unwrap();
    let web =
        Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr).token_file(&token("web")))
            .await
            .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        support::endpoint_count(d, "orders") == 1
    })
    .await;

    let mut c = TcpStream::connect(web.outbound).await.unwrap();
    c.write_all(
        b"GET /chat HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut c).await;
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "{head}\nweb:\n{}\norders:\n{}",
        web.logs(),
        orders.logs()
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(
        lower.contains("sec-websocket-accept: accepted-dghlihnhbxbszq=="),
        "{head}"
    );
    for message in [&b"hello"[..], b"over the mesh", &[0u8, 1, 2, 255]] {
        c.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, message);
    }

    // A server that refuses the upgrade: its answer reaches the client as it is.
    let mut plain = TcpStream::connect(web.outbound).await.unwrap();
    plain
        .write_all(b"GET /chat HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: h2c-not-websocket\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut plain).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    drop(cp);
}
