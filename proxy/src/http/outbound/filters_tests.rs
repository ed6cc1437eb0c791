//! The filters layer alone, over an app that answers at once: the rate limit,
//! the fault and the header changes, in paused time.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;
use tower::Layer;

use super::fake_tests::{cluster, n, orders, request, App};
use super::filters::FiltersLayer;
use super::service::{Routed, Serve};
use crate::resilience::fault::{Abort, Fault, Share};
use crate::resilience::rate_limit::{BucketConfig, Limiter, TokenBucket};
use crate::snapshot::{HeaderMods, RoutePolicy};

fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

fn fault(delay: Option<Duration>, abort: Option<Abort>) -> Fault {
    let all = Share(Share::MILLION);
    Fault {
        delay: delay.map(|d| (d, all)),
        abort: abort.map(|a| (a, all)),
        headers: vec![],
    }
}

#[tokio::test(start_paused = true)]
async fn over_the_rate_limit_a_request_gets_429_and_goes_no_further() {
    let app = App::answering(200, Duration::ZERO);
    let config = BucketConfig {
        max_tokens: 1,
        tokens_per_fill: 1,
        fill_interval: Duration::from_secs(3600),
    };
    let policy = RoutePolicy {
        rate_limit: Some(Limiter {
            config,
            bucket: Arc::new(TokenBucket::new(&config, Instant::now())),
        }),
        ..Default::default()
    };
    let cluster = cluster(vec![]);
    let filters = FiltersLayer.layer(&app);
    let first = filters
        .call(Routed::new(request(), orders(), &policy, &cluster))
        .await;
    let second = filters
        .call(Routed::new(request(), orders(), &policy, &cluster))
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.headers()["remora-error"], "rate limited");
    assert_eq!(app.seen().len(), 1);
    assert_eq!(n(&cluster.state.stats.rate_limited), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fault_delays_then_aborts_and_the_app_never_sees_the_request() {
    let app = App::answering(200, Duration::ZERO);
    let mut cluster = cluster(vec![]);
    let delay = Duration::from_millis(300);
    cluster.fault = Some(Arc::new(fault(Some(delay), Some(Abort::Http(418)))));
    let policy = RoutePolicy::default();
    let filters = FiltersLayer.layer(&app);
    let started = Instant::now();
    let response = filters
        .call(Routed::new(request(), orders(), &policy, &cluster))
        .await;
    assert_eq!(started.elapsed(), delay);
    assert_eq!(response.status().as_u16(), 418);
    assert_eq!(response.headers()["remora-error"], "fault injected");
    assert!(app.seen().is_empty());
    assert_eq!(n(&cluster.state.stats.faults_delayed), 1);
    assert_eq!(n(&cluster.state.stats.faults_aborted), 1);
}

#[tokio::test(start_paused = true)]
async fn header_changes_apply_to_the_request_and_its_answer() {
    let app = App::answering(200, Duration::ZERO);
    let policy = RoutePolicy {
        request_headers: HeaderMods {
            set: vec![header("x-env", "prod")],
            ..Default::default()
        },
        response_headers: HeaderMods {
            set: vec![header("x-served-by", "remora")],
            ..Default::default()
        },
        ..Default::default()
    };
    let mut cluster = cluster(vec![]);
    let filters = FiltersLayer.layer(&app);
    let response = filters
        .call(Routed::new(request(), orders(), &policy, &cluster))
        .await;
    assert_eq!(response.headers()["x-served-by"], "remora");
    assert_eq!(app.seen()[0].headers["x-env"], "prod");

    // The fault's own answer is not the cluster's: no response changes.
    cluster.fault = Some(Arc::new(fault(None, Some(Abort::Http(503)))));
    let filters = FiltersLayer.layer(&app);
    let response = filters
        .call(Routed::new(request(), orders(), &policy, &cluster))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("x-served-by").is_none());
}
