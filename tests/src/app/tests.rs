use std::time::Duration;

use ::http::{Request, Version};
use bytes::Bytes;
use http_body_util::Full;

use super::*;
use crate::harness::http::{get_with_host, send};

#[tokio::test]
async fn http_app_names_itself_and_tells_what_it_saw_over_http1() {
    let app = TestApp::http("alpha");
    let reply = get_with_host(app.addr, "orders.shop", "/x").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "alpha\n");
    assert_eq!(reply.header("x-backend"), Some("alpha"));
    assert_eq!(reply.header("x-seen-host"), Some("orders.shop"));
    assert_eq!(reply.header("x-seen-version"), Some("HTTP/1.1"));
    assert_eq!(app.requests(), 1);
}

#[tokio::test]
async fn http_app_speaks_h2c_and_sees_the_authority() {
    let app = TestApp::http("alpha");
    let request = Request::get("http://orders:80/")
        .version(Version::HTTP_2)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(app.addr, request).await.unwrap();
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.header("x-seen-host"), Some("orders:80"));
    assert_eq!(reply.header("x-seen-version"), Some("HTTP/2.0"));
}

#[tokio::test]
async fn http_app_echoes_posts_and_obeys_the_status_knobs() {
    let app = TestApp::http("alpha");
    let post = Request::post("/")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_eq!(send(app.addr, post).await.unwrap().text(), "hello");

    let failing = Request::get("/")
        .header("x-app-status", "503")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(app.addr, failing).await.unwrap().status, 503);

    app.set_status(500);
    assert_eq!(get_with_host(app.addr, "a", "/").await.unwrap().status, 500);
    app.set_status(0);
    assert_eq!(get_with_host(app.addr, "a", "/").await.unwrap().status, 200);
}

#[tokio::test]
async fn a_dropped_app_refuses_new_connections() {
    let app = TestApp::http("alpha");
    let addr = app.addr;
    drop(app);
    // The abort lands at the task's next poll.
    crate::harness::wait_for(Duration::from_secs(2), || async {
        get_with_host(addr, "a", "/").await.is_err()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn grpc_app_says_and_streams_with_its_name() {
    use remora_proto::demo::EchoRequest;
    let app = TestApp::grpc("beta");
    let mut client = echo_client(app.addr, "echo.default").await.unwrap();
    let reply = client
        .say(EchoRequest {
            message: "hi".into(),
            count: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reply.message.as_str(), reply.backend.as_str()),
        ("hi", "beta")
    );

    let mut stream = client
        .say_many(EchoRequest {
            message: "m".into(),
            count: 3,
        })
        .await
        .unwrap()
        .into_inner();
    let mut sequences = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        assert_eq!(reply.backend, "beta");
        sequences.push(reply.sequence);
    }
    assert_eq!(sequences, [0, 1, 2]);
    assert_eq!(app.requests(), 2);
}

#[tokio::test]
async fn a_dropped_app_cuts_its_open_connections() {
    use crate::load::{Load, LoadSpec};
    let app = TestApp::http("alpha");
    let load = Load::start(LoadSpec::max(app.addr, "alpha").connections(2));
    crate::harness::wait_for(Duration::from_secs(5), || async {
        !load.snapshot_since(Duration::ZERO).is_empty()
    })
    .await
    .unwrap();
    drop(app);
    let dropped_at = load.elapsed();
    crate::harness::wait_for(Duration::from_secs(5), || async {
        crate::load::count_errors(&load.snapshot_since(dropped_at)) > 0
    })
    .await
    .unwrap();
    let _ = load.stop().await;
}
