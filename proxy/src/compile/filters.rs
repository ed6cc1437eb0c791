//! The HTTP filters Remora implements besides RBAC and the router: fault injection
//! (`envoy.filters.http.fault`) and local rate limits
//! (`envoy.filters.http.local_ratelimit`).

use std::sync::Arc;

use remora_proto::prost::Message;
use remora_proto::xds::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use remora_proto::xds::envoy::extensions::filters::http::fault::v3::{
    fault_abort::ErrorType, HttpFault,
};
use remora_proto::xds::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use remora_proto::xds::envoy::r#type::v3::{
    fractional_percent::DenominatorType, FractionalPercent,
};
use remora_proto::xds::google::protobuf::Any;

use super::route::header_match;
use crate::resilience::fault::{Abort, Fault, Share};
use crate::resilience::rate_limit::{BucketConfig, Limiter};
use crate::upstream::EndpointRegistry;

pub const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
pub const LOCAL_RATE_LIMIT: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
pub const RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";

type FieldError = (String, String);

/// A fault filter: the cluster it is restricted to (empty: every cluster) and
/// the fault.
pub fn fault(any: &Any, field: &str) -> Result<(String, Arc<Fault>), FieldError> {
    let f = HttpFault::decode(any.value.as_slice())
        .map_err(|e| (field.to_owned(), format!("cannot decode: {e}")))?;
    if f.max_active_faults.is_some()
        || f.response_rate_limit.is_some()
        || !f.downstream_nodes.is_empty()
    {
        return Err((
            field.to_owned(),
            "only abort, delay, headers and upstream_cluster are supported".into(),
        ));
    }
    let abort = match f.abort {
        None => None,
        Some(a) => {
            let kind = match a.error_type {
                Some(ErrorType::HttpStatus(s)) if (200..600).contains(&s) => Abort::Http(s as u16),
                Some(ErrorType::GrpcStatus(c)) if c < 17 => Abort::Grpc(c),
                _ => {
                    return Err((
                        format!("{field}.abort"),
                        "an http_status (200-599) or grpc_status (0-16) is required".into(),
                    ))
                }
            };
            Some((
                kind,
                share(a.percentage, &format!("{field}.abort.percentage"))?,
            ))
        }
    };
    let delay = match f.delay {
        None => None,
        Some(d) => {
            let fixed = match d.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(d)) => {
                    super::duration(&d, &format!("{field}.delay.fixed_delay"))?
                }
                _ => return Err((format!("{field}.delay"), "a fixed_delay is required".into())),
            };
            Some((
                fixed,
                share(d.percentage, &format!("{field}.delay.percentage"))?,
            ))
        }
    };
    let headers = f
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| header_match(h, &format!("{field}.headers[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok((
        f.upstream_cluster,
        Arc::new(Fault {
            delay,
            abort,
            headers,
        }),
    ))
}

fn share(p: Option<FractionalPercent>, field: &str) -> Result<Share, FieldError> {
    let Some(p) = p else {
        return Ok(Share(Share::MILLION));
    };
    let scale = match DenominatorType::try_from(p.denominator) {
        Ok(DenominatorType::Hundred) => 10_000,
        Ok(DenominatorType::TenThousand) => 100,
        Ok(DenominatorType::Million) => 1,
        Err(_) => return Err((field.to_owned(), "unknown denominator".into())),
    };
    Ok(Share(p.numerator.saturating_mul(scale).min(Share::MILLION)))
}

/// A rate limit with a token bucket, enabled and enforced; `None` when the
/// config has no bucket (a listener-level placeholder) or is not enforced.
pub fn rate_limit(
    any: &Any,
    field: &str,
    registry: &EndpointRegistry,
) -> Result<Option<Limiter>, FieldError> {
    if any.type_url != LOCAL_RATE_LIMIT {
        return Err((
            field.to_owned(),
            format!("expected {LOCAL_RATE_LIMIT}, got {}", any.type_url),
        ));
    }
    let r = LocalRateLimit::decode(any.value.as_slice())
        .map_err(|e| (field.to_owned(), format!("cannot decode: {e}")))?;
    if !r.descriptors.is_empty() {
        return Err((format!("{field}.descriptors"), "not supported".into()));
    }
    let full =
        |p: &Option<remora_proto::xds::envoy::config::core::v3::RuntimeFractionalPercent>| {
            p.as_ref()
                .and_then(|p| p.default_value)
                .is_some_and(|v| share(Some(v), field).is_ok_and(|s| s.0 >= Share::MILLION))
        };
    let Some(bucket) = r.token_bucket else {
        return Ok(None);
    };
    if !full(&r.filter_enabled) || !full(&r.filter_enforced) {
        // Envoy: a limit enabled or enforced for a share of requests; Remora
        // limits all or none.
        if r.filter_enabled.is_none() && r.filter_enforced.is_none() {
            return Ok(None);
        }
        return Err((
            format!("{field}.filter_enforced"),
            "only 100% (or absent: off) is supported".into(),
        ));
    }
    let fill_field = format!("{field}.token_bucket.fill_interval");
    let fill = bucket
        .fill_interval
        .as_ref()
        .map(|d| super::duration(d, &fill_field))
        .transpose()?
        .filter(|d| !d.is_zero())
        .ok_or_else(|| (fill_field.clone(), "required, above zero".to_owned()))?;
    let config = BucketConfig {
        max_tokens: bucket.max_tokens,
        tokens_per_fill: bucket.tokens_per_fill.map_or(1, |t| t.value),
        fill_interval: fill,
    };
    let key = if r.stat_prefix.is_empty() {
        field.to_owned()
    } else {
        r.stat_prefix
    };
    Ok(Some(Limiter {
        bucket: registry.bucket(&key, &config),
        config,
    }))
}
