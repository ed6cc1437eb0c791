//! The retry layer alone, over an upstream that fails on purpose, in paused
//! time: which failures are retried, when the retries stop, and what the
//! answer is then.

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;
use tower::Layer;

use super::deadline::Deadline;
use super::fake_tests::{cluster, n, orders, request, Step, Upstream};
use super::retry::RetryLayer;
use super::service::{Routed, Serve};
use crate::http::reply::TimeoutKind;
use crate::resilience::{BudgetConfig, RetryOn, RetryPolicy};
use crate::snapshot::RoutePolicy;
use crate::upstream::Cluster;

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Retries of 502, 503, 504 and per-try timeouts, with no backoff.
fn retrying(retries: u32) -> RetryPolicy {
    RetryPolicy {
        on: RetryOn {
            gateway_error: true,
            ..Default::default()
        },
        statuses: vec![],
        grpc_codes: 0,
        retries,
        per_try_timeout: None,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
    }
}

fn policy(retry: RetryPolicy) -> RoutePolicy {
    RoutePolicy {
        retry: Some(retry),
        ..Default::default()
    }
}

/// A request under `policy` to `cluster`, with the deadline the timeout layer
/// would have given it.
fn routed<'a>(
    policy: &'a RoutePolicy,
    cluster: &'a Cluster,
    deadline: Option<Deadline>,
) -> Routed<'a> {
    let mut routed = Routed::new(request(), orders(), policy, cluster);
    routed.deadline = deadline;
    routed
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_until_one_succeeds() {
    let upstream = Upstream::new(&[
        Step::Answer(503, MS),
        Step::Answer(502, MS),
        Step::Answer(200, MS),
    ]);
    let (policy, cluster) = (policy(retrying(2)), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let response = retry.call(routed(&policy, &cluster, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.attempts().len(), 3);
    assert_eq!(n(&cluster.state.stats.retries), 2);
}

#[tokio::test(start_paused = true)]
async fn when_retries_run_out_the_last_failure_is_the_answer() {
    let upstream = Upstream::new(&[Step::Answer(503, MS)]);
    let (policy, cluster) = (policy(retrying(2)), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let response = retry.call(routed(&policy, &cluster, None)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response.headers().get("remora-error").is_none(),
        "the upstream's own answer, as it is"
    );
    assert_eq!(upstream.attempts().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn failures_the_policy_does_not_name_are_answered_at_once() {
    let upstream = Upstream::new(&[Step::ConnectFailure]);
    let mut only_409 = retrying(2);
    only_409.on = RetryOn {
        listed_statuses: true,
        ..Default::default()
    };
    only_409.statuses = vec![409];
    let (policy, cluster) = (policy(only_409), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let response = retry.call(routed(&policy, &cluster, None)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["remora-error"],
        "upstream connect failed"
    );
    assert_eq!(upstream.attempts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_has_its_per_try_timeout_and_the_last_says_so() {
    let upstream = Upstream::new(&[Step::Answer(200, HOUR)]);
    let mut per_try = retrying(1);
    per_try.per_try_timeout = Some(100 * MS);
    let (policy, cluster) = (policy(per_try), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let started = Instant::now();
    let response = retry.call(routed(&policy, &cluster, None)).await;
    assert_eq!(started.elapsed(), 200 * MS);
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()["remora-error"], "per-try timeout");
    let deadlines: Vec<_> = upstream.attempts().iter().map(|(_, d)| *d).collect();
    assert_eq!(
        deadlines,
        [Some(started + 100 * MS), Some(started + 200 * MS)]
    );
    assert_eq!(n(&cluster.state.stats.timeouts_per_try), 2);
}

#[tokio::test(start_paused = true)]
async fn the_request_deadline_cuts_the_last_attempt_short() {
    let upstream = Upstream::new(&[Step::Answer(200, HOUR)]);
    let mut per_try = retrying(3);
    per_try.per_try_timeout = Some(100 * MS);
    let (policy, cluster) = (policy(per_try), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let started = Instant::now();
    let deadline = Deadline {
        at: started + 150 * MS,
        kind: TimeoutKind::Request,
    };
    let response = retry.call(routed(&policy, &cluster, Some(deadline))).await;
    assert_eq!(started.elapsed(), 150 * MS);
    assert_eq!(response.headers()["remora-error"], "request timeout");
    let deadlines: Vec<_> = upstream.attempts().iter().map(|(_, d)| *d).collect();
    assert_eq!(
        deadlines,
        [Some(started + 100 * MS), Some(deadline.at)],
        "the second attempt is told what is left"
    );
    assert_eq!(n(&cluster.state.stats.timeouts_per_try), 1);
    assert_eq!(n(&cluster.state.stats.timeouts_request), 1);
}

#[tokio::test(start_paused = true)]
async fn a_backoff_past_the_deadline_waits_for_it_and_answers_504() {
    let upstream = Upstream::new(&[Step::Answer(503, MS)]);
    let mut slow = retrying(1);
    // Full jitter: anything up to 100 days, so past the deadline in all but
    // one draw in ten million.
    slow.backoff_base = 2400 * HOUR;
    slow.backoff_max = 2400 * HOUR;
    let (policy, cluster) = (policy(slow), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let started = Instant::now();
    let deadline = Deadline {
        at: started + Duration::from_secs(1),
        kind: TimeoutKind::Request,
    };
    let response = retry.call(routed(&policy, &cluster, Some(deadline))).await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(upstream.attempts().len(), 1);
    assert_eq!(n(&cluster.state.stats.retries), 0);
}

#[tokio::test(start_paused = true)]
async fn no_retry_once_the_budget_is_spent() {
    let upstream = Upstream::new(&[Step::Answer(503, MS)]);
    let mut cluster = cluster(vec![]);
    cluster.retry_budget = BudgetConfig {
        ratio: 0.0,
        min_per_second: 0,
        window: Duration::from_secs(10),
    };
    let policy = policy(retrying(2));
    let retry = RetryLayer.layer(&upstream);
    let response = retry.call(routed(&policy, &cluster, None)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.attempts().len(), 1);
    assert_eq!(n(&cluster.state.stats.retry_budget_exhausted), 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_policy_one_attempt_carries_the_request_deadline() {
    let upstream = Upstream::new(&[Step::Answer(503, MS)]);
    let (policy, cluster) = (RoutePolicy::default(), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let started = Instant::now();
    let deadline = Deadline {
        at: started + Duration::from_secs(1),
        kind: TimeoutKind::Request,
    };
    let response = retry.call(routed(&policy, &cluster, Some(deadline))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.attempts(), [(started, Some(deadline.at))]);
}

#[tokio::test(start_paused = true)]
async fn backing_off_is_not_counted_as_the_proxys_overhead() {
    let upstream = Upstream::new(&[Step::Answer(503, MS), Step::Answer(200, MS)]);
    let mut slow = retrying(1);
    slow.backoff_base = 10 * HOUR;
    slow.backoff_max = 10 * HOUR;
    let (policy, cluster) = (policy(slow), cluster(vec![]));
    let retry = RetryLayer.layer(&upstream);
    let started = Instant::now();
    let (response, learned) =
        crate::telemetry::observe(retry.call(routed(&policy, &cluster, None))).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    // The stand-in upstream reports no upstream time: what is left of the
    // request's time is its two answers, never the backoff between them.
    assert_eq!(learned.overhead(elapsed), 2 * MS);
    assert_eq!(learned.waited, elapsed - 2 * MS);
}
