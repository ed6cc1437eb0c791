//! The HTTP filters a TrafficPolicy adds: fault injection on the outbound listener
//! (one `envoy.filters.http.fault` per HTTP port of a faulty Service, restricted to its
//! cluster with `upstream_cluster`) and local rate limits (a token bucket per
//! Service: on its inbound listener, and per route to it on the outbound side).

use std::time::Duration;

use remora_proto::xds::envoy::config::core::v3::RuntimeFractionalPercent;
use remora_proto::xds::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, HeaderMatcher,
};
use remora_proto::xds::envoy::extensions::filters::common::fault::v3::{fault_delay, FaultDelay};
use remora_proto::xds::envoy::extensions::filters::http::fault::v3::{
    fault_abort, FaultAbort, HttpFault,
};
use remora_proto::xds::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use remora_proto::xds::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use remora_proto::xds::envoy::r#type::v3::{
    fractional_percent::DenominatorType, FractionalPercent, TokenBucket as XdsTokenBucket,
};
use remora_proto::xds::google::protobuf::{Any, UInt32Value};

use super::{encode, names, resilience::duration};
use crate::resources::{self, Faults, ObjectKey, PolicyTarget, TokenBucket};
use crate::store::Store;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";

/// The fault filters for every Service with faults, in Service order.
pub fn outbound_faults(store: &Store) -> Vec<HttpFilter> {
    let mut out = Vec::new();
    for service in store.services() {
        let Some(faults) = store
            .traffic_policy(&PolicyTarget::Service(service.key.clone()))
            .and_then(|p| p.faults.as_ref())
        else {
            continue;
        };
        // HTTP faults mean nothing to an opaque port's connections.
        for port in service.ports.iter().filter(|p| !p.protocol.is_opaque()) {
            let config = fault(faults, names::cluster(&service.key, port.port));
            out.push(filter(FAULT_FILTER, encode::message(&config)));
        }
    }
    out
}

/// The listener-level rate limit filter of the outbound listener: no bucket (the
/// routes to a limited Service carry theirs).
pub fn outbound_rate_limit(store: &Store) -> Option<HttpFilter> {
    store
        .traffic_policies()
        .any(|p| p.rate_limit.outbound.is_some())
        .then(|| {
            filter(
                RATE_LIMIT_FILTER,
                encode::message(&LocalRateLimit {
                    stat_prefix: names::OUTBOUND.to_owned(),
                    ..Default::default()
                }),
            )
        })
}

/// The per-route rate limit for requests to `service`, if its policy limits them.
pub fn route_rate_limit(store: &Store, service: &ObjectKey) -> Option<Any> {
    let bucket = store
        .traffic_policy(&PolicyTarget::Service(service.clone()))?
        .rate_limit
        .outbound?;
    Some(encode::message(&rate_limit(
        format!("outbound|{}", names::fqdn(service)),
        bucket,
    )))
}

/// The inbound listener's rate limit filter, if the Service's policy has one.
pub fn inbound_rate_limit(store: &Store, service: &ObjectKey) -> Option<HttpFilter> {
    let bucket = store
        .traffic_policy(&PolicyTarget::Service(service.clone()))?
        .rate_limit
        .inbound?;
    let config = rate_limit(names::inbound(service), bucket);
    Some(filter(RATE_LIMIT_FILTER, encode::message(&config)))
}

fn filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

fn millionths(n: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: n,
        denominator: DenominatorType::Million as i32,
    }
}

fn fault(f: &Faults, cluster: String) -> HttpFault {
    HttpFault {
        upstream_cluster: cluster,
        abort: f.abort.map(|(kind, share)| FaultAbort {
            percentage: Some(millionths(share)),
            error_type: Some(match kind {
                resources::FaultAbort::Http(s) => fault_abort::ErrorType::HttpStatus(s.into()),
                resources::FaultAbort::Grpc(c) => fault_abort::ErrorType::GrpcStatus(c),
            }),
            response_body: "fault injected".to_owned(),
        }),
        delay: f.delay.map(|(d, share)| FaultDelay {
            percentage: Some(millionths(share)),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(d))),
        }),
        headers: f
            .headers
            .iter()
            .map(|(name, value)| HeaderMatcher {
                name: name.clone(),
                header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
                    match_pattern: Some(MatchPattern::Exact(value.clone())),
                    ignore_case: false,
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A bucket of `burst` tokens refilled with `requests_per_second` each second,
/// enabled and enforced for every request.
fn rate_limit(stat_prefix: String, bucket: TokenBucket) -> LocalRateLimit {
    let all = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: DenominatorType::Hundred as i32,
        }),
        ..Default::default()
    };
    LocalRateLimit {
        stat_prefix,
        token_bucket: Some(XdsTokenBucket {
            max_tokens: bucket.burst,
            tokens_per_fill: Some(UInt32Value {
                value: bucket.requests_per_second,
            }),
            fill_interval: Some(duration(Duration::from_secs(1))),
        }),
        filter_enabled: Some(all()),
        filter_enforced: Some(all()),
        ..Default::default()
    }
}
