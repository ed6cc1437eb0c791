//! The timeout layer alone, over an app that answers late, in paused time.

use std::time::Duration;

use http::{HeaderValue, Request, StatusCode};
use tokio::time::Instant;
use tower::Layer;

use super::deadline::Deadline;
use super::fake_tests::{cluster, n, orders, request, App};
use super::service::{Routed, Serve};
use super::timeout::TimeoutLayer;
use crate::http::reply::TimeoutKind;
use crate::snapshot::RoutePolicy;
use crate::upstream::RequestBody;

const MS: Duration = Duration::from_millis(1);

/// A gRPC call that gives itself `grpc_timeout`.
fn grpc_call(grpc_timeout: &'static str) -> Request<RequestBody> {
    Request::builder()
        .method("POST")
        .uri("http://orders/remora.demo.v1.Echo/Say")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", HeaderValue::from_static(grpc_timeout))
        .body(RequestBody::Empty)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_answers_504_at_the_deadline_and_says_which() {
    let app = App::answering(200, Duration::from_secs(5));
    let policy = RoutePolicy {
        timeout: Some(300 * MS),
        ..Default::default()
    };
    let cluster = cluster(vec![]);
    let timeout = TimeoutLayer.layer(&app);
    let started = Instant::now();
    let response = timeout
        .call(Routed::new(request(), orders(), &policy, &cluster))
        .await;
    assert_eq!(started.elapsed(), 300 * MS);
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()["remora-error"], "request timeout");
    assert_eq!(n(&cluster.state.stats.timeouts_request), 1);
}

#[tokio::test(start_paused = true)]
async fn an_answer_in_time_passes_and_the_layers_below_know_the_deadline() {
    let app = App::answering(200, 100 * MS);
    let policy = RoutePolicy {
        timeout: Some(300 * MS),
        ..Default::default()
    };
    let cluster = cluster(vec![]);
    let timeout = TimeoutLayer.layer(&app);
    let started = Instant::now();
    let response = timeout
        .call(Routed::new(request(), orders(), &policy, &cluster))
        .await;
    assert_eq!(started.elapsed(), 100 * MS);
    assert_eq!(response.status(), StatusCode::OK);
    let seen = app.seen();
    let expected = Deadline {
        at: started + 300 * MS,
        kind: TimeoutKind::Request,
    };
    assert_eq!(seen[0].deadline, Some(expected));
    assert!(!seen[0].grpc);
    assert_eq!(n(&cluster.state.stats.timeouts_request), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_timeout_the_answer_takes_what_it_takes() {
    let app = App::answering(200, Duration::from_secs(30));
    let policy = RoutePolicy::default();
    let cluster = cluster(vec![]);
    let timeout = TimeoutLayer.layer(&app);
    let started = Instant::now();
    let response = timeout
        .call(Routed::new(grpc_call("1m"), orders(), &policy, &cluster))
        .await;
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        app.seen()[0].deadline.is_none(),
        "grpc-timeout counts only where the route honours it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shorter_grpc_timeout_wins_and_answers_deadline_exceeded() {
    let app = App::answering(200, Duration::from_secs(5));
    let policy = RoutePolicy {
        timeout: Some(Duration::from_secs(1)),
        grpc_timeout: Some(None),
        ..Default::default()
    };
    let cluster = cluster(vec![]);
    let timeout = TimeoutLayer.layer(&app);
    let started = Instant::now();
    let response = timeout
        .call(Routed::new(grpc_call("250m"), orders(), &policy, &cluster))
        .await;
    assert_eq!(started.elapsed(), 250 * MS);
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "gRPC errors travel in grpc-status"
    );
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(response.headers()["remora-error"], "grpc deadline exceeded");
    assert!(app.seen()[0].grpc);
    assert_eq!(n(&cluster.state.stats.timeouts_request), 1);
}

#[tokio::test(start_paused = true)]
async fn the_route_caps_a_grpc_timeout() {
    let app = App::answering(200, Duration::from_secs(5));
    let policy = RoutePolicy {
        grpc_timeout: Some(Some(100 * MS)),
        ..Default::default()
    };
    let cluster = cluster(vec![]);
    let timeout = TimeoutLayer.layer(&app);
    let started = Instant::now();
    let response = timeout
        .call(Routed::new(grpc_call("250m"), orders(), &policy, &cluster))
        .await;
    assert_eq!(started.elapsed(), 100 * MS);
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(
        app.seen()[0].deadline.map(|d| d.kind),
        Some(TimeoutKind::GrpcDeadline)
    );
}
