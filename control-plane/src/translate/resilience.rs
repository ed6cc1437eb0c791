//! A route's timeouts and retries -> RouteAction `timeout`, `retry_policy` and
//! `max_stream_duration`.
//!
//! - `timeouts.request` -> `timeout` (absent: `0s`, no timeout, rather than Envoy's
//!   15 s default, which would cut long responses and streams);
//! - `timeouts.backendRequest` -> `retry_policy.per_try_timeout`;
//! - `retry` -> `retry_policy`: `connect-failure,refused-stream,reset`, plus
//!   `retriable-status-codes` with the codes; `num_retries` = attempts;
//!   `retry_back_off` from the backoff (max 10x);
//! - every route honours a gRPC client's `grpc-timeout`
//!   (`max_stream_duration.grpc_timeout_header_max: 0s`).
//!
//! A TrafficPolicy fills in what a rule leaves out: the one on the rule's HTTPRoute
//! first, then the one on the Service the request is addressed to. A rule's own
//! `retry` replaces a policy's whole; a policy's `retry` also names `5xx`,
//! `gateway-error` and gRPC codes.

use std::time::Duration;

use remora_proto::xds::envoy::config::route::v3::route_action::hash_policy::{
    self, PolicySpecifier,
};
use remora_proto::xds::envoy::config::route::v3::route_action::HashPolicy;
use remora_proto::xds::envoy::config::route::v3::{
    retry_policy::RetryBackOff, route_action::MaxStreamDuration, RetryPolicy, RouteAction,
};
use remora_proto::xds::google::protobuf::{Duration as XdsDuration, UInt32Value};

use crate::resources::{HashKey, LoadBalancer, ObjectKey, PolicyTarget, Rule, TrafficPolicy};
use crate::store::Store;

/// What a route's requests are sent with: `service` is the Service they are
/// addressed to, `route` the HTTPRoute and rule they matched (none for a
/// Service's default route).
pub fn apply(
    action: &mut RouteAction,
    store: &Store,
    service: &ObjectKey,
    route: Option<(&ObjectKey, &Rule)>,
) {
    let by_route =
        route.and_then(|(key, _)| store.traffic_policy(&PolicyTarget::HttpRoute(key.clone())));
    let by_service = store.traffic_policy(&PolicyTarget::Service(service.clone()));
    let policies = [by_route, by_service];
    let policy_timeout =
        |f: fn(&TrafficPolicy) -> Option<Duration>| policies.iter().flatten().find_map(|p| f(p));
    let rule = route.map(|(_, rule)| rule);
    let timeouts = rule.map(|r| r.timeouts).unwrap_or_default();
    let request = timeouts
        .request
        .or_else(|| policy_timeout(|p| p.timeouts.request));
    action.timeout = Some(duration(request.unwrap_or(Duration::ZERO)));
    action.idle_timeout = policy_timeout(|p| p.timeouts.stream_idle).map(duration);
    action.max_stream_duration = Some(MaxStreamDuration {
        grpc_timeout_header_max: Some(duration(Duration::ZERO)),
        ..Default::default()
    });
    let per_try = timeouts
        .backend_request
        .or_else(|| policy_timeout(|p| p.timeouts.per_try))
        .filter(|d| !d.is_zero());
    let rule_retry = rule.and_then(|r| r.retry.as_ref());
    let policy_retry = policies.iter().flatten().find_map(|p| p.retry.as_ref());
    if rule_retry.is_none() && policy_retry.is_none() && per_try.is_none() {
        return;
    }
    let mut policy = RetryPolicy {
        per_try_timeout: per_try.map(duration),
        num_retries: Some(UInt32Value { value: 0 }),
        ..Default::default()
    };
    if let (None, Some(retry)) = (rule_retry, policy_retry) {
        let mut on: Vec<&str> = retry.on.iter().map(String::as_str).collect();
        if !retry.codes.is_empty() {
            on.push("retriable-status-codes");
        }
        on.extend(retry.grpc_codes.iter().map(String::as_str));
        policy.retry_on = on.join(",");
        policy.retriable_status_codes = retry.codes.iter().map(|c| u32::from(*c)).collect();
        policy.num_retries = Some(UInt32Value {
            value: retry.attempts,
        });
        policy.retry_back_off = retry.backoff.map(|(base, max)| RetryBackOff {
            base_interval: Some(duration(base)),
            max_interval: Some(duration(max)),
        });
    }
    if let Some(retry) = rule_retry {
        let mut on = vec!["connect-failure", "refused-stream", "reset"];
        if !retry.codes.is_empty() {
            on.push("retriable-status-codes");
        }
        policy.retry_on = on.join(",");
        policy.retriable_status_codes = retry.codes.iter().map(|c| u32::from(*c)).collect();
        policy.num_retries = Some(UInt32Value {
            value: retry.attempts,
        });
        policy.retry_back_off = retry.backoff.map(|base| RetryBackOff {
            base_interval: Some(duration(base)),
            max_interval: Some(duration(base * 10)),
        });
    }
    action.retry_policy = Some(policy);
}

pub fn duration(d: Duration) -> XdsDuration {
    XdsDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// `hash_policy` for requests to `backends`: the key of the first one whose
/// TrafficPolicy balances by consistent hashing.
pub fn hash_policy<'a>(
    store: &Store,
    backends: impl IntoIterator<Item = &'a ObjectKey>,
) -> Vec<HashPolicy> {
    let key = backends.into_iter().find_map(|service| {
        match &store
            .traffic_policy(&PolicyTarget::Service(service.clone()))?
            .load_balancer
        {
            LoadBalancer::ConsistentHash { key, .. } => Some(key),
            _ => None,
        }
    });
    let specifier = match key {
        None => return Vec::new(),
        Some(HashKey::Header(name)) => PolicySpecifier::Header(hash_policy::Header {
            header_name: name.clone(),
            ..Default::default()
        }),
        Some(HashKey::Cookie { name, ttl, path }) => PolicySpecifier::Cookie(hash_policy::Cookie {
            name: name.clone(),
            ttl: ttl.map(duration),
            path: path.clone().unwrap_or_default(),
            ..Default::default()
        }),
    };
    vec![HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    }]
}
