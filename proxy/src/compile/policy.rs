//! RouteAction `timeout`, `retry_policy` and `max_stream_duration` -> a route's
//! [`RoutePolicy`].

use std::time::Duration;

use remora_proto::xds::envoy::config::route::v3::RouteAction as XdsRouteAction;

use super::duration;
use crate::resilience::retry::{grpc_code, DEFAULT_BACKOFF_BASE};
use crate::resilience::{RetryOn, RetryPolicy};
use http::HeaderName;

use crate::snapshot::{HashPolicy, RoutePolicy};

type FieldError = (String, String);

/// Envoy's route timeout when none is given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

pub fn compile(a: &XdsRouteAction, field: &str) -> Result<RoutePolicy, FieldError> {
    let timeout = match &a.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(d) => Some(duration(d, &format!("{field}.timeout"))?).filter(|d| !d.is_zero()),
    };
    let grpc_timeout = match a
        .max_stream_duration
        .as_ref()
        .and_then(|m| m.grpc_timeout_header_max.as_ref())
    {
        None => None,
        Some(max) => {
            let max = duration(
                max,
                &format!("{field}.max_stream_duration.grpc_timeout_header_max"),
            )?;
            Some(Some(max).filter(|m| !m.is_zero()))
        }
    };
    let retry = a
        .retry_policy
        .as_ref()
        .map(|r| retry(r, &format!("{field}.retry_policy")))
        .transpose()?;
    let hash = hash(a, field)?;
    let stream_idle = a
        .idle_timeout
        .as_ref()
        .map(|d| duration(d, &format!("{field}.idle_timeout")))
        .transpose()?
        .filter(|d| !d.is_zero());
    Ok(RoutePolicy {
        timeout,
        retry,
        grpc_timeout,
        hash,
        stream_idle,
        ..Default::default()
    })
}

/// `hash_policy`: one header or cookie policy.
fn hash(a: &XdsRouteAction, field: &str) -> Result<Option<HashPolicy>, FieldError> {
    use remora_proto::xds::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
    if a.hash_policy.len() > 1 {
        return Err((
            format!("{field}.hash_policy"),
            "only one hash policy is supported".into(),
        ));
    }
    if let Some(h) = a.hash_policy.first() {
        let path = format!("{field}.hash_policy[0]");
        return match &h.policy_specifier {
            Some(PolicySpecifier::Header(header)) => {
                HeaderName::from_bytes(header.header_name.as_bytes())
                    .map(|n| Some(HashPolicy::Header(n)))
                    .map_err(|_| {
                        (
                            format!("{path}.header.header_name"),
                            format!("`{}` is not a header name", header.header_name),
                        )
                    })
            }
            Some(PolicySpecifier::Cookie(c)) if !c.name.is_empty() => {
                Ok(Some(HashPolicy::Cookie {
                    name: c.name.clone(),
                    ttl: c
                        .ttl
                        .as_ref()
                        .map(|d| duration(d, &format!("{path}.cookie.ttl")))
                        .transpose()?,
                    path: if c.path.is_empty() {
                        "/".into()
                    } else {
                        c.path.clone()
                    },
                }))
            }
            Some(PolicySpecifier::Cookie(_)) => {
                Err((format!("{path}.cookie.name"), "empty".into()))
            }
            _ => Err((
                path,
                "only header and cookie hash policies are supported".into(),
            )),
        };
    }
    Ok(None)
}

fn retry(
    r: &remora_proto::xds::envoy::config::route::v3::RetryPolicy,
    field: &str,
) -> Result<RetryPolicy, FieldError> {
    let unsupported = |name: &str| Err((format!("{field}.{name}"), "not supported".to_owned()));
    if r.retry_priority.is_some() {
        return unsupported("retry_priority");
    }
    if !r.retry_host_predicate.is_empty() {
        return unsupported("retry_host_predicate");
    }
    if !r.retriable_headers.is_empty() {
        return unsupported("retriable_headers");
    }
    if !r.retriable_request_headers.is_empty() {
        return unsupported("retriable_request_headers");
    }
    if r.rate_limited_retry_back_off.is_some() {
        return unsupported("rate_limited_retry_back_off");
    }
    let mut on = RetryOn::default();
    let mut grpc_codes = 0u32;
    for condition in r
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        match condition {
            "5xx" => on.server_error = true,
            "gateway-error" => on.gateway_error = true,
            "connect-failure" => on.connect_failure = true,
            "reset" | "refused-stream" => on.reset = true,
            "retriable-status-codes" => on.listed_statuses = true,
            other => match grpc_code(other) {
                Some(code) => grpc_codes |= 1 << code,
                None => {
                    return Err((
                        format!("{field}.retry_on"),
                        format!("`{other}` is not supported (5xx, gateway-error, connect-failure, reset, refused-stream, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)"),
                    ))
                }
            },
        }
    }
    let mut statuses = Vec::with_capacity(r.retriable_status_codes.len());
    for (i, code) in r.retriable_status_codes.iter().enumerate() {
        match u16::try_from(*code) {
            Ok(c) if (100..=599).contains(&c) => statuses.push(c),
            _ => {
                return Err((
                    format!("{field}.retriable_status_codes[{i}]"),
                    format!("{code} is not an HTTP status"),
                ))
            }
        }
    }
    let per_try_timeout = r
        .per_try_timeout
        .as_ref()
        .map(|d| duration(d, &format!("{field}.per_try_timeout")))
        .transpose()?
        .filter(|d| !d.is_zero());
    let (backoff_base, backoff_max) = match &r.retry_back_off {
        None => (DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_BASE * 10),
        Some(b) => {
            let base = match &b.base_interval {
                Some(d) => duration(d, &format!("{field}.retry_back_off.base_interval"))?,
                None => {
                    return Err((
                        format!("{field}.retry_back_off.base_interval"),
                        "required".into(),
                    ))
                }
            };
            if base.is_zero() {
                return Err((
                    format!("{field}.retry_back_off.base_interval"),
                    "must be greater than zero".into(),
                ));
            }
            let max = match &b.max_interval {
                Some(d) => duration(d, &format!("{field}.retry_back_off.max_interval"))?,
                None => base * 10,
            };
            if max < base {
                return Err((
                    format!("{field}.retry_back_off.max_interval"),
                    "must not be less than base_interval".into(),
                ));
            }
            (base, max)
        }
    };
    Ok(RetryPolicy {
        on,
        statuses,
        grpc_codes,
        retries: r.num_retries.map_or(1, |n| n.value),
        per_try_timeout,
        backoff_base,
        backoff_max,
    })
}
