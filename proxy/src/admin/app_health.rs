//! `GET /app-health/<container>/<probe>`: the app's own kubelet probe, run by
//! the proxy (see [`crate::bootstrap::probes`] for why and how it gets here).
//!
//! The proxy connects to 127.0.0.1 from its own uid, which the iptables rules
//! never redirect, so the probe reaches the app as it would without a mesh.
//! An `httpGet` probe answers the app's own status (the kubelet counts 2xx and
//! 3xx as success); a `tcpSocket` probe answers 200 when the port accepts a
//! connection, else 503; a `grpc` probe answers 200 when the app's gRPC
//! health service says SERVING, else 503 with what it said
//! ([`super::grpc_health`]). All give up after the probe's timeout (the
//! kubelet's `timeoutSeconds`, at most ten seconds) with 503.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::grpc_health;
use crate::bootstrap::{AppProbe, ProbeAction};
use crate::http::ResponseBody;

/// Runs `probe` against the app and answers as the kubelet expects.
pub(super) async fn run(probe: AppProbe) -> Response<ResponseBody> {
    let timeout = probe.timeout;
    let outcome = tokio::time::timeout(timeout, attempt(probe.action)).await;
    match outcome {
        Ok(Ok((status, body))) => answer(status, body),
        Ok(Err(reason)) => answer(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        Err(_) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the app did not answer within {timeout:?}\n"),
        ),
    }
}

async fn attempt(action: ProbeAction) -> Result<(StatusCode, String), String> {
    match action {
        ProbeAction::Tcp { port } => {
            let addr = app(port);
            connect(addr)
                .await
                .map(|_| (StatusCode::OK, format!("{addr} accepts connections\n")))
        }
        ProbeAction::Http {
            port,
            path,
            headers,
        } => {
            let addr = app(port);
            let stream = connect(addr).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
            let request = build(addr, &path, headers).map_err(|e| format!("{path}: {e}"))?;
            // The connection is driven here, not in a task of its own: when
            // the probe times out this future is dropped and the socket with
            // it, so an app that never answers leaks nothing, probe after
            // probe. The body is never read.
            let send = sender.send_request(request);
            tokio::pin!(send, connection);
            let response = tokio::select! {
                response = &mut send => response,
                // Ended first: an answer it read is waiting in `send`.
                _ = &mut connection => send.await,
            }
            .map_err(|e| format!("GET {addr}{path}: {e}"))?;
            let status = response.status();
            tracing::debug!(%addr, %path, status = status.as_u16(), "app probe");
            Ok((status, format!("the app answered {status}\n")))
        }
        ProbeAction::Grpc { port, service } => grpc_health::check(app(port), &service)
            .await
            .map(|text| (StatusCode::OK, text)),
    }
}

/// The kubelet's request: its `Host` is the app's address unless the probe
/// sets one, and it closes after the answer.
fn build(
    addr: SocketAddr,
    path: &str,
    headers: Vec<(http::HeaderName, HeaderValue)>,
) -> Result<Request<Empty<Bytes>>, http::Error> {
    let mut request = Request::get(path).body(Empty::new())?;
    let map = request.headers_mut();
    for (name, value) in headers {
        map.append(name, value);
    }
    if !map.contains_key(header::HOST) {
        if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
            map.insert(header::HOST, host);
        }
    }
    map.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if !map.contains_key(header::USER_AGENT) {
        map.insert(
            header::USER_AGENT,
            HeaderValue::from_static("remora-proxy app-health"),
        );
    }
    Ok(request)
}

fn app(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A connection to the app at `addr`, or the reason a probe reports.
pub(super) async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

fn answer(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An app that answers every request with `status` and tells what it got.
    async fn app_answering(status: u16) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            stream.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        (port, task)
    }

    fn probe(action: ProbeAction) -> AppProbe {
        AppProbe {
            action,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn an_http_probe_answers_the_apps_status_and_sends_its_headers() {
        for status in [200, 302, 500] {
            let (port, seen) = app_answering(status).await;
            let response = run(probe(ProbeAction::Http {
                port,
                path: "/healthz?full=1".into(),
                headers: vec![(
                    http::HeaderName::from_static("x-probe"),
                    HeaderValue::from_static("live"),
                )],
            }))
            .await;
            assert_eq!(response.status().as_u16(), status);
            let seen = seen.await.unwrap().to_ascii_lowercase();
            assert!(
                seen.starts_with("get /healthz?full=1 http/1.1\r\n"),
                "{seen}"
            );
            assert!(seen.contains("x-probe: live\r\n"), "{seen}");
            assert!(
                seen.contains(&format!("host: 127.0.0.1:{port}\r\n")),
                "{seen}"
            );
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_503_for_every_kind() {
        // Bound then dropped: nothing listens there now.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tcp = run(probe(ProbeAction::Tcp { port })).await;
        assert_eq!(tcp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let http = run(probe(ProbeAction::Http {
            port,
            path: "/".into(),
            headers: Vec::new(),
        }))
        .await;
        assert_eq!(http.status(), StatusCode::SERVICE_UNAVAILABLE);
        let grpc = run(probe(ProbeAction::Grpc {
            port,
            service: String::new(),
        }))
        .await;
        assert_eq!(grpc.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn an_open_port_is_200() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = run(probe(ProbeAction::Tcp { port })).await;
        assert_eq!(tcp.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn an_app_that_never_answers_is_503_at_the_timeout() {
        // Accepts (the backlog does) but never reads or answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let response = run(AppProbe {
            action: ProbeAction::Http {
                port,
                path: "/".into(),
                headers: Vec::new(),
            },
            timeout: Duration::from_secs(1),
        })
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(listener);
    }

    #[tokio::test]
    async fn a_grpc_probe_the_app_never_answers_is_503_and_leaves_no_connection() {
        // Reads what comes (the preface, the call) but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let mut seen = Vec::new();
            stream.read_to_end(&mut seen).await?;
            Ok::<_, std::io::Error>(seen)
        });
        let response = run(AppProbe {
            action: ProbeAction::Grpc {
                port,
                service: "orders".into(),
            },
            timeout: Duration::from_millis(500),
        })
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        // hyper's connection task ends once the probe is dropped: the app
        // reads to the end of a closed connection.
        let seen = tokio::time::timeout(Duration::from_secs(5), app)
            .await
            .expect("the probe's connection outlived it")
            .unwrap()
            .unwrap();
        assert!(
            seen.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            "h2c with prior knowledge: {seen:?}"
        );
    }
}
