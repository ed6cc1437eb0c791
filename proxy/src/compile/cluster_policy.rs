//! A cluster's resilience settings: its balancer (`lb_policy`), outlier
//! detection, circuit-breaker limits, retry budget and connection idle timeout.

use remora_proto::prost::Message;
use remora_proto::xds::envoy::config::cluster::v3::cluster::{LbConfig, LbPolicy};
use remora_proto::xds::envoy::config::cluster::v3::Cluster as XdsCluster;
use remora_proto::xds::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use remora_proto::xds::google::protobuf::value::Kind;

use super::CompileError;
use crate::balance::ring::MAX_RING_SIZE;
use crate::balance::{Balancer, Ring, RoundRobin};
use crate::resilience::BudgetConfig;
use crate::upstream::{Limits, OutlierConfig, WeightedEndpoint, DEFAULT_IDLE_TIMEOUT};

/// `lb_policy`: `LEAST_REQUEST` is power of two choices over requests in flight,
/// or over Remora's peak-EWMA latency x requests when the cluster's metadata says
/// `remora.balancer: peak-ewma`; `ROUND_ROBIN` is weighted round robin;
/// `RING_HASH` (and `MAGLEV`, served the same way) hashes the route's hash key,
/// with 256 points per unit of weight unless `minimum_ring_size` asks for more.
pub fn balancer(c: &XdsCluster, endpoints: &[WeightedEndpoint]) -> Result<Balancer, CompileError> {
    let err = |f: &str, m: String| CompileError::new("Cluster", &c.name, f, m);
    match LbPolicy::try_from(c.lb_policy) {
        Ok(LbPolicy::LeastRequest) => {
            let peak_ewma = super::metadata::remora(c.metadata.as_ref(), "balancer")
                .is_some_and(|v| matches!(&v.kind, Some(Kind::StringValue(b)) if b == "peak-ewma"));
            Ok(if peak_ewma {
                Balancer::PeakEwma
            } else {
                Balancer::LeastRequest
            })
        }
        Ok(LbPolicy::RoundRobin) => Ok(Balancer::RoundRobin(RoundRobin::new(endpoints))),
        Ok(LbPolicy::RingHash | LbPolicy::Maglev) => {
            let minimum = match &c.lb_config {
                Some(LbConfig::RingHashLbConfig(r)) => r.minimum_ring_size.map(|s| s.value),
                _ => None,
            };
            if minimum.is_some_and(|m| m > MAX_RING_SIZE as u64) {
                return Err(err(
                    "ring_hash_lb_config.minimum_ring_size",
                    format!("at most {MAX_RING_SIZE}"),
                ));
            }
            Ok(Balancer::RingHash(Ring::new(
                endpoints,
                minimum.map(|m| m as usize),
            )))
        }
        Ok(other) => Err(err(
            "lb_policy",
            format!(
                "{} is not supported (LEAST_REQUEST, ROUND_ROBIN, RING_HASH and MAGLEV are)",
                other.as_str_name()
            ),
        )),
        Err(_) => Err(err("lb_policy", format!("unknown policy {}", c.lb_policy))),
    }
}

/// `outlier_detection`: consecutive failures only (`consecutive_5xx`, which counts
/// connect failures and resets too, as Envoy does without
/// `split_external_local_origin_errors`); success-rate and failure-percentage
/// ejection are not implemented and refused when enforced.
pub fn outlier(c: &XdsCluster) -> Result<Option<OutlierConfig>, CompileError> {
    let Some(o) = &c.outlier_detection else {
        return Ok(None);
    };
    let err = |f: &str, m: &str| {
        CompileError::new("Cluster", &c.name, format!("outlier_detection.{f}"), m)
    };
    let d = OutlierConfig::DEFAULT;
    if o.enforcing_consecutive_5xx.is_some_and(|e| e.value == 0) {
        return Ok(None);
    }
    if o.failure_percentage_threshold.is_some() {
        return Err(err(
            "failure_percentage_threshold",
            "failure-percentage ejection is not supported",
        ));
    }
    if o.success_rate_minimum_hosts.is_some()
        || o.success_rate_request_volume.is_some()
        || o.success_rate_stdev_factor.is_some()
    {
        return Err(err(
            "success_rate_stdev_factor",
            "success-rate ejection is not supported",
        ));
    }
    let duration =
        |v: &Option<remora_proto::xds::google::protobuf::Duration>, f: &str, default| match v {
            None => Ok(default),
            Some(v) => super::duration(v, f).map_err(|(f, m)| err(&f, &m)),
        };
    let max_percent = o
        .max_ejection_percent
        .map_or(d.max_ejection_percent, |p| p.value);
    if max_percent > 100 {
        return Err(err("max_ejection_percent", "must be at most 100"));
    }
    Ok(Some(OutlierConfig {
        consecutive_failures: o
            .consecutive_5xx
            .map_or(d.consecutive_failures, |n| n.value)
            .max(1),
        base_ejection_time: duration(
            &o.base_ejection_time,
            "base_ejection_time",
            d.base_ejection_time,
        )?,
        max_ejection_time: duration(
            &o.max_ejection_time,
            "max_ejection_time",
            d.max_ejection_time,
        )?,
        max_ejection_percent: max_percent,
    }))
}

/// `circuit_breakers.thresholds[0]` (the default priority's): `max_requests`,
/// `max_connections` and `max_pending_requests` (what each bounds: see
/// `upstream::breaker`).
pub fn limits(c: &XdsCluster) -> Limits {
    let Some(t) = c
        .circuit_breakers
        .as_ref()
        .and_then(|cb| cb.thresholds.first())
    else {
        return Limits::default();
    };
    Limits {
        max_requests: t.max_requests.map(|v| v.value),
        max_connections: t.max_connections.map(|v| v.value),
        max_pending_requests: t.max_pending_requests.map(|v| v.value),
    }
}

/// `circuit_breakers.thresholds[0].retry_budget` (default priority only); without
/// one, the default budget: retries are always budgeted.
pub fn retry_budget(c: &XdsCluster) -> Result<BudgetConfig, CompileError> {
    let Some(t) = c
        .circuit_breakers
        .as_ref()
        .and_then(|cb| cb.thresholds.first())
    else {
        return Ok(BudgetConfig::DEFAULT);
    };
    let Some(budget) = &t.retry_budget else {
        return Ok(BudgetConfig::DEFAULT);
    };
    let err = |f: &str, m: String| {
        CompileError::new(
            "Cluster",
            &c.name,
            format!("circuit_breakers.thresholds[0].retry_budget.{f}"),
            m,
        )
    };
    let ratio = match budget.budget_percent {
        None => BudgetConfig::DEFAULT.ratio,
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value / 100.0,
        Some(p) => {
            return Err(err(
                "budget_percent",
                format!("{} is not a percentage", p.value),
            ))
        }
    };
    let window = match &budget.budget_interval {
        None => BudgetConfig::DEFAULT.window,
        Some(d) => Some(super::duration(d, "budget_interval").map_err(|(f, m)| err(&f, m))?)
            .filter(|w| !w.is_zero())
            .unwrap_or(BudgetConfig::DEFAULT.window),
    };
    Ok(BudgetConfig {
        ratio,
        min_per_second: budget
            .min_retry_concurrency
            .map_or(BudgetConfig::DEFAULT.min_per_second, |m| m.value),
        window,
    })
}

/// `common_http_protocol_options.idle_timeout` of the HTTP protocol options (Envoy's
/// default: 1 h; 0 disables, which Remora takes as the longest it can wait).
pub fn idle_timeout(c: &XdsCluster) -> Result<std::time::Duration, CompileError> {
    let Some(any) = c
        .typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    else {
        return Ok(DEFAULT_IDLE_TIMEOUT);
    };
    let options = HttpProtocolOptions::decode(any.value.as_slice()).map_err(|e| {
        CompileError::new(
            "Cluster",
            &c.name,
            "typed_extension_protocol_options",
            format!("cannot decode: {e}"),
        )
    })?;
    match options
        .common_http_protocol_options
        .and_then(|o| o.idle_timeout)
    {
        None => Ok(DEFAULT_IDLE_TIMEOUT),
        Some(d) => {
            let field =
                "typed_extension_protocol_options.common_http_protocol_options.idle_timeout";
            let d = super::duration(&d, field)
                .map_err(|(f, m)| CompileError::new("Cluster", &c.name, f, m))?;
            Ok(if d.is_zero() {
                std::time::Duration::from_secs(365 * 24 * 3600)
            } else {
                d
            })
        }
    }
}
