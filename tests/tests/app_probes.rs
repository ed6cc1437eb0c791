//! The admin port in a pod: the app's own kubelet probes, which injection
//! points at `/app-health/...` because STRICT mTLS would refuse the kubelet's
//! plaintext, are run by the proxy against the app (`REMORA_APP_PROBES`),
//! `grpc` ones as the standard gRPC health check; and a caller off loopback
//! (the kubelet, another pod) gets only the probe and metrics paths, a few
//! connections per address.
//!
//! The proxy is started from environment variables only, as injection runs
//! it. 127.0.0.1 is "local" to the admin port and the rest of 127/8 is not,
//! so a client socket bound to 127.0.0.3 plays a caller from another host.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, http, wait_for, ControlPlane, Process, START_TIMEOUT};
use serde::Deserialize;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where a caller from "another host" connects from.
const REMOTE: &str = "127.0.0.3";

/// The proxy's `admin::MAX_CONNECTIONS_PER_REMOTE_IP`, written out: this crate
/// runs the binaries and does not link the proxy's library.
const PER_ADDRESS_CAP: usize = 8;

#[derive(Deserialize)]
struct Addresses {
    admin: SocketAddr,
}

/// `remora-proxy` from the environment (a pod's), listeners on loopback
/// port 0, with `probes` as `REMORA_APP_PROBES`.
async fn pod_proxy(
    cp: &ControlPlane,
    root: &std::path::Path,
    probes: &str,
) -> (SocketAddr, Process) {
    let bundle = cp.api_get("/api/v1/trust-bundle").await.unwrap().text();
    let token = root.join("orders.token");
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", "orders")).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("remora-app-probes-")
        .tempdir()
        .unwrap();
    let addresses_file = dir.path().join("addresses.json");
    let mut command = Command::new(bin_path("remora-proxy").unwrap());
    command.env_remove("REMORA_BOOTSTRAP");
    for (name, value) in [
        ("REMORA_BOOTSTRAP_FROM_ENV", "1".to_owned()),
        ("REMORA_SERVICE", "orders".to_owned()),
        ("POD_NAMESPACE", "default".to_owned()),
        ("POD_NAME", "orders-7f9c-x2".to_owned()),
        ("POD_IP", "127.0.0.1".to_owned()),
        ("SERVICE_ACCOUNT", "orders".to_owned()),
        ("REMORA_CONTROL_PLANE", cp.xds_addr.to_string()),
        ("REMORA_TRUST_BUNDLE", bundle),
        ("REMORA_TOKEN_FILE", token.display().to_string()),
        ("REMORA_INBOUND", "127.0.0.1:0".to_owned()),
        ("REMORA_OUTBOUND", "127.0.0.1:0".to_owned()),
        ("REMORA_ADMIN", "127.0.0.1:0".to_owned()),
        ("REMORA_APP_PROBES", probes.to_owned()),
    ] {
        command.env(name, value);
    }
    command.arg("--addresses-file").arg(&addresses_file);
    let mut process = Process::spawn("remora-proxy pod", command, dir).unwrap();
    let addresses: Addresses = process
        .wait_addresses(&addresses_file, START_TIMEOUT)
        .await
        .unwrap();
    (addresses.admin, process)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gRPC answer's body: the message, then the trailers.
type GrpcBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// An app's gRPC health service (`grpc.health.v1.Health/Check`) on a
/// loopback port, over h2c: SERVING for the server as a whole (`""`),
/// NOT_SERVING for `down`, no answer ever for `hang`, NOT_FOUND for another
/// service (as grpc-go's and tonic's health services do), UNIMPLEMENTED for
/// another method. Written with hyper: the workspace has no tonic-health.
async fn grpc_health_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(health)),
            );
        }
    });
    port
}

async fn health(request: Request<Incoming>) -> Result<Response<GrpcBody>, Infallible> {
    if request.uri().path() != "/grpc.health.v1.Health/Check" {
        return Ok(grpc_answer(None, 12));
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(grpc_answer(None, 13)),
    };
    let Some(service) = requested_service(&body) else {
        return Ok(grpc_answer(None, 3));
    };
    match service.as_str() {
        "" => Ok(grpc_answer(Some(1), 0)),
        "down" => Ok(grpc_answer(Some(2), 0)),
        "hang" => std::future::pending().await,
        _ => Ok(grpc_answer(None, 5)),
    }
}

/// The service a `HealthCheckRequest` names: an empty message (`""`), or
/// field 1 (0x0a) with a one-byte length, enough for these tests' names.
fn requested_service(body: &[u8]) -> Option<String> {
    match body {
        [0, 0, 0, 0, 0] => Some(String::new()),
        [0, _, _, _, _, 0x0a, len, name @ ..] if usize::from(*len) == name.len() => {
            String::from_utf8(name.to_vec()).ok()
        }
        _ => None,
    }
}

/// A `HealthCheckResponse` with `serving` as its status and `grpc-status`
/// `code` in the trailers; without one, a trailers-only answer (the status
/// in the headers), as servers fail a call.
fn grpc_answer(serving: Option<u8>, code: u32) -> Response<GrpcBody> {
    let mut frames = Vec::new();
    let mut response = Response::builder().header("content-type", "application/grpc");
    match serving {
        Some(status) => {
            let message = vec![0, 0, 0, 0, 2, 0x08, status];
            frames.push(Ok(Frame::data(Bytes::from(message))));
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from(code));
            frames.push(Ok(Frame::trailers(trailers)));
        }
        None => response = response.header("grpc-status", code),
    }
    response
        .body(StreamBody::new(futures::stream::iter(frames)))
        .unwrap()
}

/// One HTTP/1.1 request to `admin` from a socket bound to `source`; the
/// status, or `None` when the connection closed without an answer.
async fn request_from(source: &str, admin: SocketAddr, method: &str, path: &str) -> Option<u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(admin).await.ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut reply = Vec::new();
    // A refused connection ends at once (or with a reset): what was read is
    // all there is.
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply)
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_probes_are_run_by_the_proxy_and_answer_as_the_app_does() {
    let (root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let app = TestApp::http("orders");
    let port = app.addr.port();
    let probes = json!({
        "/app-health/app/livez": {"httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"}},
        // The test app answers the status this header asks for: the probe's
        // headers reach it, and its 500 comes back as it is.
        "/app-health/app/readyz": {
            "httpGet": {"path": "/ready", "port": port,
                        "httpHeaders": [{"name": "x-app-status", "value": "500"}]},
            "timeoutSeconds": 2
        },
        "/app-health/app/startupz": {"tcpSocket": {"port": closed_port()}},
        "/app-health/db/livez": {"tcpSocket": {"port": port}},
    });
    let (admin, process) = pod_proxy(&cp, root.path(), &probes.to_string()).await;

    let get = |path: &'static str| async move { http::get(admin, path).await.unwrap() };
    let live = get("/app-health/app/livez").await;
    assert_eq!(live.status, 200, "{}\n{}", live.text(), process.logs());
    assert!(app.requests() >= 1, "the app was asked");
    let ready = get("/app-health/app/readyz").await;
    assert_eq!(ready.status, 500, "{}", ready.text());
    let startup = get("/app-health/app/startupz").await;
    assert_eq!(startup.status, 503, "{}", startup.text());
    assert_eq!(get("/app-health/db/livez").await.status, 200);
    // Only the paths injection listed.
    let unknown = get("/app-health/app/other").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(get("/app-health/web/livez").await.status, 404);

    // The kubelet calls from the node, off loopback: the probes answer it.
    assert_eq!(
        request_from(REMOTE, admin, "GET", "/app-health/app/livez").await,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_probes_are_the_apps_health_check_run_by_the_proxy() {
    let (root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let health = grpc_health_app().await;
    // A real gRPC server without the health service.
    let echo = TestApp::grpc("orders");
    let probes = json!({
        "/app-health/app/livez": {"grpc": {"port": health}},
        "/app-health/app/readyz": {"grpc": {"port": health, "service": "down"}},
        "/app-health/app/startupz": {"grpc": {"port": health, "service": "hang"}, "timeoutSeconds": 1},
        "/app-health/db/livez": {"grpc": {"port": closed_port()}},
        "/app-health/db/readyz": {"grpc": {"port": echo.addr.port()}},
        "/app-health/db/startupz": {"grpc": {"port": health, "service": "payments"}},
    });
    let (admin, process) = pod_proxy(&cp, root.path(), &probes.to_string()).await;
    let get = |path: &'static str| async move { http::get(admin, path).await.unwrap() };

    let serving = get("/app-health/app/livez").await;
    assert_eq!(
        serving.status,
        200,
        "{}\n{}",
        serving.text(),
        process.logs()
    );
    assert!(serving.text().contains("SERVING"), "{}", serving.text());
    for (path, reason) in [
        ("/app-health/app/readyz", "status NOT_SERVING"),
        ("/app-health/db/livez", "cannot connect"),
        ("/app-health/db/readyz", "grpc-status 12 (UNIMPLEMENTED)"),
        ("/app-health/db/startupz", "grpc-status 5 (NOT_FOUND)"),
    ] {
        let failed = get(path).await;
        assert_eq!(failed.status, 503, "{path}: {}", failed.text());
        assert!(failed.text().contains(reason), "{path}: {}", failed.text());
    }

    // An app that never answers: 503 from the probe's timeout (no timed
    // assertion: the reason says which path answered).
    let hung = get("/app-health/app/startupz").await;
    assert_eq!(hung.status, 503, "{}", hung.text());
    assert!(
        hung.text().contains("did not answer within 1s"),
        "{}",
        hung.text()
    );

    // The kubelet calls from the node, off loopback: the probes answer it.
    assert_eq!(
        request_from(REMOTE, admin, "GET", "/app-health/app/livez").await,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_off_loopback_get_the_probe_paths_only_and_a_few_connections() {
    let (root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let app = TestApp::http("orders");
    // A probe the app takes a few seconds to answer: it holds a connection.
    let probes = json!({
        "/app-health/app/livez": {
            "httpGet": {"path": "/", "port": app.addr.port(),
                        "httpHeaders": [{"name": "x-app-delay-ms", "value": "4000"}]},
            "timeoutSeconds": 10
        },
    });
    let (admin, process) = pod_proxy(&cp, root.path(), &probes.to_string()).await;
    let ready = wait_for(Duration::from_secs(15), || async {
        http::get(admin, "/ready")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ready.is_ok(), "not ready:\n{}", process.logs());

    for (method, path, status) in [
        ("GET", "/ready", 200),
        ("GET", "/live", 200),
        ("GET", "/metrics", 200),
        ("GET", "/config_dump", 403),
        ("GET", "/", 403),
        ("POST", "/shutdown", 403),
        ("POST", "/logging?level=debug", 403),
    ] {
        assert_eq!(
            request_from(REMOTE, admin, method, path).await,
            Some(status),
            "{method} {path} from {REMOTE}"
        );
    }
    // From loopback, everything as before.
    assert_eq!(
        request_from("127.0.0.1", admin, "GET", "/config_dump").await,
        Some(200)
    );

    // One more slow probe than one address may hold at once: one is closed
    // without an answer, the others get the app's.
    let held = PER_ADDRESS_CAP + 1;
    let answers = futures::future::join_all(
        (0..held).map(|_| request_from(REMOTE, admin, "GET", "/app-health/app/livez")),
    )
    .await;
    let answered = answers.iter().filter(|a| **a == Some(200)).count();
    let refused = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(
        (answered, refused),
        (held - 1, 1),
        "{answers:?}\n{}",
        process.logs()
    );
    // Loopback is not counted against it.
    assert_eq!(http::get(admin, "/ready").await.unwrap().status, 200);
}
