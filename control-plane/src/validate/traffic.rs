//! Decoding `TrafficPolicy` (`policy.remora.dev/v1alpha1`): timeouts and retries
//! for a Service or an HTTPRoute, and a Service's retry budget and connect timeout.

use serde_yaml_ng::{Mapping, Value};

use super::decode::{field, get, index, Decoder};
use super::policy::required_target_ref;
use crate::resources::{
    ConnectionLimits, FaultAbort, Faults, HashKey, LoadBalancer, ObjectKey, OutlierDetection,
    PolicyRetry, PolicyTarget, PolicyTimeouts, RateLimits, RetryBudget, TokenBucket, TrafficPolicy,
};

const SPEC: &[&str] = &[
    "targetRef",
    "timeouts",
    "retry",
    "outlierDetection",
    "connectionLimits",
    "loadBalancer",
    "faults",
    "rateLimit",
];
const FAULTS: &[&str] = &["abort", "delay", "headers"];
const ABORT: &[&str] = &["status", "grpcStatus", "percent"];
const DELAY: &[&str] = &["duration", "percent"];
const RATE_LIMIT: &[&str] = &["inbound", "outbound"];
const BUCKET: &[&str] = &["requestsPerSecond", "burst"];
const LOAD_BALANCER: &[&str] = &["type", "consistentHash"];
const CONSISTENT_HASH: &[&str] = &["header", "cookie", "minimumRingSize"];
const COOKIE: &[&str] = &["name", "ttl", "path"];
const OUTLIER: &[&str] = &[
    "consecutiveFailures",
    "baseEjectionTime",
    "maxEjectionTime",
    "maxEjectionPercent",
];
const LIMITS: &[&str] = &["maxConnections", "maxPendingRequests", "maxRequests"];
const TIMEOUTS: &[&str] = &["request", "perTry", "connect", "idle", "streamIdle"];
const RETRY: &[&str] = &["attempts", "on", "codes", "grpcCodes", "backoff", "budget"];
const BACKOFF: &[&str] = &["base", "max"];
const BUDGET: &[&str] = &["percent", "minRetriesPerSecond"];
const CONDITIONS: &[&str] = &["connect-failure", "reset", "5xx", "gateway-error"];
/// gRPC codes a retry may name, with Envoy's `retry_on` spelling.
const GRPC_CODES: &[(&str, &str)] = &[
    ("CANCELLED", "cancelled"),
    ("DEADLINE_EXCEEDED", "deadline-exceeded"),
    ("INTERNAL", "internal"),
    ("RESOURCE_EXHAUSTED", "resource-exhausted"),
    ("UNAVAILABLE", "unavailable"),
];
/// Retries when a policy's `retry` does not say.
const DEFAULT_ATTEMPTS: u32 = 2;

pub fn decode(spec: &Mapping, key: ObjectKey, d: &mut Decoder) -> Option<TrafficPolicy> {
    d.known_fields(spec, "spec", SPEC, &[]);
    let target = required_target_ref(spec, &key, d);
    let timeouts = timeouts(spec, d);
    let retry = get(spec, "retry").and_then(|v| retry(v, d));
    let outlier_detection = get(spec, "outlierDetection").and_then(|v| outlier(v, d));
    let limits = get(spec, "connectionLimits")
        .and_then(|v| limits(v, d))
        .unwrap_or_default();
    let faults = get(spec, "faults").and_then(|v| faults(v, d));
    let rate_limit = get(spec, "rateLimit")
        .and_then(|v| rate_limits(v, d))
        .unwrap_or_default();
    let load_balancer = get(spec, "loadBalancer")
        .and_then(|v| load_balancer(v, d))
        .unwrap_or_default();
    if let Some(PolicyTarget::HttpRoute(_)) = &target {
        for key in ["faults", "rateLimit"] {
            if get(spec, key).is_some() {
                d.error(
                    field("spec", key),
                    "applies to the requests to a Service: target the Service",
                );
            }
        }
        if get(spec, "loadBalancer").is_some() {
            d.error(
                "spec.loadBalancer",
                "applies to a Service's endpoints: target the Service",
            );
        }
        if outlier_detection.is_some() {
            d.error(
                "spec.outlierDetection",
                "applies to a Service's endpoints: target the Service",
            );
        }
        if !limits.is_empty() {
            d.error(
                "spec.connectionLimits",
                "applies to a Service's endpoints: target the Service",
            );
        }
        if timeouts.connect.is_some() {
            d.error(
                "spec.timeouts.connect",
                "applies to a Service's connections: target the Service",
            );
        }
        if retry.as_ref().is_some_and(|r| r.budget.is_some()) {
            d.error(
                "spec.retry.budget",
                "a retry budget is a Service's: target the Service",
            );
        }
    }
    Some(TrafficPolicy {
        key,
        target: target?,
        timeouts,
        retry,
        outlier_detection,
        limits,
        load_balancer,
        faults,
        rate_limit,
    })
}

/// A percentage (0 to 100, decimals allowed) as millionths.
fn percent(m: &Mapping, path: &str, d: &mut Decoder) -> Option<u32> {
    let p = field(path, "percent");
    match get(m, "percent") {
        None => {
            d.error(p, "required");
            None
        }
        Some(v) => match v.as_f64() {
            Some(x) if (0.0..=100.0).contains(&x) => Some((x * 10_000.0).round() as u32),
            _ => {
                d.error(p, "must be a number from 0 to 100");
                None
            }
        },
    }
}

fn faults(v: &Value, d: &mut Decoder) -> Option<Faults> {
    let path = "spec.faults";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, FAULTS, &[]);
    let abort = get(m, "abort").and_then(|v| {
        let p = field(path, "abort");
        let a = d.mapping(v, &p)?;
        d.known_fields(a, &p, ABORT, &[]);
        let share = percent(a, &p, d);
        let http = d
            .integer(a, &p, "status", 200..=599)
            .map(|s| FaultAbort::Http(s as u16));
        let grpc = d
            .integer(a, &p, "grpcStatus", 1..=16)
            .map(|c| FaultAbort::Grpc(c as u32));
        let kind = match (http, grpc) {
            (Some(h), None) => h,
            (None, Some(g)) => g,
            _ => {
                d.error(&p, "give exactly one of status or grpcStatus");
                return None;
            }
        };
        Some((kind, share?))
    });
    let delay = get(m, "delay").and_then(|v| {
        let p = field(path, "delay");
        let dl = d.mapping(v, &p)?;
        d.known_fields(dl, &p, DELAY, &[]);
        let duration = d.duration(dl, &p, "duration");
        if duration.is_none() && get(dl, "duration").is_none() {
            d.error(field(&p, "duration"), "required");
        }
        Some((duration?, percent(dl, &p, d)?))
    });
    let mut headers = Vec::new();
    for (i, h) in d.sequence(m, path, "headers").iter().enumerate() {
        let p = index("spec.faults.headers", i);
        let Some(hm) = d.mapping(h, &p) else { continue };
        d.known_fields(hm, &p, &["name", "value"], &[]);
        let name = d.required_string(hm, &p, "name");
        let value = d.required_string(hm, &p, "value");
        if let Some(n) = &name {
            if let Err(message) = super::names::header_name(n) {
                d.error(field(&p, "name"), message);
            }
        }
        if let (Some(n), Some(v)) = (name, value) {
            headers.push((n.to_ascii_lowercase(), v));
        }
    }
    if abort.is_none() && delay.is_none() && get(m, "abort").is_none() && get(m, "delay").is_none()
    {
        d.error(path, "give abort, delay or both");
    }
    Some(Faults {
        abort,
        delay,
        headers,
    })
}

fn rate_limits(v: &Value, d: &mut Decoder) -> Option<RateLimits> {
    let path = "spec.rateLimit";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, RATE_LIMIT, &[]);
    let mut bucket = |key: &str| {
        let p = field(path, key);
        let b = d.mapping(get(m, key)?, &p)?;
        d.known_fields(b, &p, BUCKET, &[]);
        let rps = d.integer(b, &p, "requestsPerSecond", 1..=1_000_000);
        if rps.is_none() && get(b, "requestsPerSecond").is_none() {
            d.error(field(&p, "requestsPerSecond"), "required");
        }
        let rps = rps? as u32;
        let burst = d
            .integer(b, &p, "burst", 1..=10_000_000)
            .map_or(rps, |n| n as u32);
        Some(TokenBucket {
            requests_per_second: rps,
            burst,
        })
    };
    Some(RateLimits {
        inbound: bucket("inbound"),
        outbound: bucket("outbound"),
    })
}

fn load_balancer(v: &Value, d: &mut Decoder) -> Option<LoadBalancer> {
    let path = "spec.loadBalancer";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, LOAD_BALANCER, &[]);
    let kind = d
        .string(m, path, "type")
        .unwrap_or_else(|| "PeakEWMA".into());
    let hash = get(m, "consistentHash");
    let lb = match kind.as_str() {
        "PeakEWMA" => LoadBalancer::PeakEwma,
        "LeastRequest" => LoadBalancer::LeastRequest,
        "RoundRobin" => LoadBalancer::RoundRobin,
        "ConsistentHash" => {
            let Some(hash) = hash else {
                d.error(
                    field(path, "consistentHash"),
                    "required with type ConsistentHash",
                );
                return None;
            };
            return consistent_hash(hash, d);
        }
        other => {
            d.error(
                field(path, "type"),
                format!("\"{other}\" is not a balancer (PeakEWMA, LeastRequest, RoundRobin or ConsistentHash)"),
            );
            return None;
        }
    };
    if hash.is_some() {
        d.error(
            field(path, "consistentHash"),
            "only with type ConsistentHash",
        );
    }
    Some(lb)
}

fn consistent_hash(v: &Value, d: &mut Decoder) -> Option<LoadBalancer> {
    let path = "spec.loadBalancer.consistentHash";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, CONSISTENT_HASH, &[]);
    let header = d.string(m, path, "header");
    if let Some(h) = &header {
        if let Err(message) = super::names::header_name(h) {
            d.error(field(path, "header"), message);
        }
    }
    let cookie = get(m, "cookie").and_then(|v| {
        let p = field(path, "cookie");
        let c = d.mapping(v, &p)?;
        d.known_fields(c, &p, COOKIE, &[]);
        let name = d.required_string(c, &p, "name");
        let ttl = d.duration(c, &p, "ttl");
        let cookie_path = d.string(c, &p, "path");
        Some(HashKey::Cookie {
            name: name?,
            ttl,
            path: cookie_path,
        })
    });
    let key = match (header, cookie) {
        (Some(h), None) => HashKey::Header(h.to_ascii_lowercase()),
        (None, Some(c)) => c,
        _ => {
            d.error(path, "give exactly one of header or cookie");
            return None;
        }
    };
    let minimum_ring_size = d
        .integer(m, path, "minimumRingSize", 1..=8 * 1024 * 1024)
        .map(|n| n as u32);
    Some(LoadBalancer::ConsistentHash {
        key,
        minimum_ring_size,
    })
}

fn outlier(v: &Value, d: &mut Decoder) -> Option<OutlierDetection> {
    let path = "spec.outlierDetection";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, OUTLIER, &[]);
    let base = d.duration(m, path, "baseEjectionTime");
    if base.is_some_and(|b| b.is_zero()) {
        d.error(field(path, "baseEjectionTime"), "must be greater than zero");
    }
    let base = base.unwrap_or(std::time::Duration::from_secs(30));
    let max = d.duration(m, path, "maxEjectionTime");
    if max.is_some_and(|m| m < base) {
        d.error(
            field(path, "maxEjectionTime"),
            "must not be less than baseEjectionTime",
        );
    }
    Some(OutlierDetection {
        consecutive_failures: d
            .integer(m, path, "consecutiveFailures", 1..=1000)
            .map_or(5, |n| n as u32),
        base_ejection_time: base,
        max_ejection_time: max,
        max_ejection_percent: d
            .integer(m, path, "maxEjectionPercent", 0..=100)
            .map_or(10, |n| n as u32),
    })
}

fn limits(v: &Value, d: &mut Decoder) -> Option<ConnectionLimits> {
    let path = "spec.connectionLimits";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, LIMITS, &[]);
    let mut n = |key| {
        d.integer(m, path, key, 1..=u64::from(u32::MAX))
            .map(|n| n as u32)
    };
    Some(ConnectionLimits {
        max_connections: n("maxConnections"),
        max_pending_requests: n("maxPendingRequests"),
        max_requests: n("maxRequests"),
    })
}

fn timeouts(spec: &Mapping, d: &mut Decoder) -> PolicyTimeouts {
    let Some(v) = get(spec, "timeouts") else {
        return PolicyTimeouts::default();
    };
    let Some(m) = d.mapping(v, "spec.timeouts") else {
        return PolicyTimeouts::default();
    };
    d.known_fields(m, "spec.timeouts", TIMEOUTS, &[]);
    let t = PolicyTimeouts {
        request: d.duration(m, "spec.timeouts", "request"),
        per_try: d.duration(m, "spec.timeouts", "perTry"),
        connect: d.duration(m, "spec.timeouts", "connect"),
        idle: d.duration(m, "spec.timeouts", "idle"),
        stream_idle: d.duration(m, "spec.timeouts", "streamIdle"),
    };
    if t.connect.is_some_and(|c| c.is_zero()) {
        d.error("spec.timeouts.connect", "must be greater than zero");
    }
    if let (Some(request), Some(per_try)) = (t.request, t.per_try) {
        if !request.is_zero() && per_try > request {
            d.error("spec.timeouts.perTry", "must not be longer than request");
        }
    }
    t
}

fn retry(v: &Value, d: &mut Decoder) -> Option<PolicyRetry> {
    let path = "spec.retry";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, RETRY, &[]);
    let attempts = d
        .integer(m, path, "attempts", 0..=10)
        .map_or(DEFAULT_ATTEMPTS, |n| n as u32);
    let mut on = Vec::new();
    for (i, c) in d.sequence(m, path, "on").iter().enumerate() {
        match c.as_str() {
            Some(c) if CONDITIONS.contains(&c) => on.push(c.to_owned()),
            _ => d.error(
                index("spec.retry.on", i),
                format!("must be one of: {}", CONDITIONS.join(", ")),
            ),
        }
    }
    let mut codes = Vec::new();
    for (i, c) in d.sequence(m, path, "codes").iter().enumerate() {
        match c.as_u64().and_then(|c| u16::try_from(c).ok()) {
            Some(code) if (400..=599).contains(&code) => codes.push(code),
            _ => d.error(
                index("spec.retry.codes", i),
                "must be an HTTP status from 400 to 599",
            ),
        }
    }
    let mut grpc_codes = Vec::new();
    for (i, c) in d.sequence(m, path, "grpcCodes").iter().enumerate() {
        match c
            .as_str()
            .and_then(|c| GRPC_CODES.iter().find(|(name, _)| *name == c))
        {
            Some((_, envoy)) => grpc_codes.push((*envoy).to_owned()),
            None => d.error(
                index("spec.retry.grpcCodes", i),
                format!(
                    "must be one of: {}",
                    GRPC_CODES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    let backoff = get(m, "backoff").and_then(|v| {
        let p = field(path, "backoff");
        let b = d.mapping(v, &p)?;
        d.known_fields(b, &p, BACKOFF, &[]);
        let base = d.duration(b, &p, "base");
        let max = d.duration(b, &p, "max");
        let Some(base) = base else {
            d.error(field(&p, "base"), "required");
            return None;
        };
        if base.is_zero() {
            d.error(field(&p, "base"), "must be greater than zero");
            return None;
        }
        let max = max.unwrap_or(base * 10);
        if max < base {
            d.error(field(&p, "max"), "must not be less than base");
            return None;
        }
        Some((base, max))
    });
    let budget = get(m, "budget").and_then(|v| {
        let p = field(path, "budget");
        let b = d.mapping(v, &p)?;
        d.known_fields(b, &p, BUDGET, &[]);
        Some(RetryBudget {
            percent: d
                .integer(b, &p, "percent", 0..=100)
                .map_or(20, |n| n as u32),
            min_per_second: d
                .integer(b, &p, "minRetriesPerSecond", 0..=10_000)
                .map_or(3, |n| n as u32),
        })
    });
    Some(PolicyRetry {
        attempts,
        on: if on.is_empty() {
            vec!["connect-failure".into(), "reset".into()]
        } else {
            on
        },
        codes,
        grpc_codes,
        backoff,
        budget,
    })
}
