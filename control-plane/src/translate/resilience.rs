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
//!
//! A Service's cluster always carries `outlier_detection`: its TrafficPolicy's,
//! or without one the same as an empty `outlierDetection: {}` (Envoy's numbers:
//! 5 consecutive failures, 30 s growing to at most 300 s, at most 10% of the
//! endpoints but always one). Detection is on by default because the default
//! balancer prefers fast endpoints, and an endpoint that fails fast would
//! otherwise draw most of the traffic; Finagle and Linkerd 1 accrue failures by
//! default the same way. `enforcing_success_rate: 0` says that no success-rate
//! ejection is meant (Envoy and gRPC's xDS client enable it by default once
//! the field is present; Remora's proxy has none).

use std::time::Duration;

use remora_proto::xds::envoy::config::cluster::v3::OutlierDetection as XdsOutlierDetection;
use remora_proto::xds::envoy::config::route::v3::route_action::hash_policy::{
    self, PolicySpecifier,
};
use remora_proto::xds::envoy::config::route::v3::route_action::HashPolicy;
use remora_proto::xds::envoy::config::route::v3::{
    retry_policy::RetryBackOff, route_action::MaxStreamDuration, RetryPolicy, RouteAction,
};
use remora_proto::xds::google::protobuf::{Duration as XdsDuration, UInt32Value};

use crate::resources::{
    HashKey, LoadBalancer, ObjectKey, OutlierDetection, PolicyTarget, Rule, TrafficPolicy,
};

/// Outlier detection when a Service's TrafficPolicy sets none: what an empty
/// `outlierDetection: {}` means (validation's defaults).
pub const DEFAULT_OUTLIER_DETECTION: OutlierDetection = OutlierDetection {
    consecutive_failures: 5,
    base_ejection_time: Duration::from_secs(30),
    max_ejection_time: None,
    max_ejection_percent: 10,
};

/// A cluster's `outlier_detection`: the policy's, or the default (see the
/// module doc); consecutive failures only.
pub fn outlier_detection(policy: Option<&TrafficPolicy>) -> XdsOutlierDetection {
    let o = policy
        .and_then(|p| p.outlier_detection)
        .unwrap_or(DEFAULT_OUTLIER_DETECTION);
    XdsOutlierDetection {
        consecutive_5xx: Some(UInt32Value {
            value: o.consecutive_failures,
        }),
        base_ejection_time: Some(duration(o.base_ejection_time)),
        max_ejection_time: o.max_ejection_time.map(duration),
        max_ejection_percent: Some(UInt32Value {
            value: o.max_ejection_percent,
        }),
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        ..Default::default()
    }
}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_policy_outlier_detection_is_an_empty_outlier_detection() {
        let default = outlier_detection(None);
        assert_eq!(default.consecutive_5xx.unwrap().value, 5);
        assert_eq!(default.base_ejection_time.unwrap().seconds, 30);
        assert_eq!(default.max_ejection_time, None);
        assert_eq!(default.max_ejection_percent.unwrap().value, 10);
        assert_eq!(default.enforcing_success_rate.unwrap().value, 0);
        // The same as a TrafficPolicy that writes `outlierDetection: {}`.
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: orders, namespace: shop}\n\
                    spec: {ports: [{port: 80}]}\n---\n\
                    apiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\n\
                    metadata: {name: orders, namespace: shop}\n\
                    spec:\n  targetRef: {kind: Service, name: orders}\n  outlierDetection: {}\n";
        let mut loaded = crate::source::Loaded::default();
        loaded
            .documents
            .extend(crate::source::parse("a.yaml", text).documents);
        let outcome = crate::validate::validate_loaded(&loaded);
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        let target = PolicyTarget::Service(ObjectKey::new("shop", "orders"));
        let policy = outcome.store.traffic_policy(&target);
        assert_eq!(
            policy.and_then(|p| p.outlier_detection),
            Some(DEFAULT_OUTLIER_DETECTION)
        );
        assert_eq!(outlier_detection(policy), default);
    }
}
