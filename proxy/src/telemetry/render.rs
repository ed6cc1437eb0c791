//! The Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use super::{Histogram, HopStats};

/// Escapes a label value: backslash, double quote and newline.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn labels(pairs: &[(&str, String)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    inner.join(",")
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A histogram's `_bucket`, `_sum` and `_count` lines.
pub fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (buckets, sum, count) = h.snapshot();
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, c) in buckets {
        let le = if le.is_infinite() {
            "+Inf".to_owned()
        } else {
            le.to_string()
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {c}");
    }
    sample(out, &format!("{name}_sum"), labels, sum);
    sample(out, &format!("{name}_count"), labels, count);
}

/// `remora_requests_total` and `remora_request_duration_seconds` of these hops.
pub fn hops(out: &mut String, hops: &[std::sync::Arc<HopStats>]) {
    header(
        out,
        "remora_requests_total",
        "counter",
        "Requests answered, by hop, HTTP status and gRPC status.",
    );
    for hop in hops {
        for (status, grpc, n) in hop.responses.snapshot() {
            let mut l = hop.labels.clone();
            l.push(("status_code", status.to_string()));
            l.push((
                "grpc_status",
                if grpc < 0 {
                    String::new()
                } else {
                    grpc.to_string()
                },
            ));
            sample(out, "remora_requests_total", &labels(&l), n);
        }
    }
    header(
        out,
        "remora_request_duration_seconds",
        "histogram",
        "From a request's arrival to its response headers, by hop.",
    );
    for hop in hops {
        histogram(
            out,
            "remora_request_duration_seconds",
            &labels(&hop.labels),
            &hop.duration,
        );
    }
    header(
        out,
        "remora_proxy_overhead_seconds",
        "histogram",
        "Time a request spent in the proxy itself (its total minus the time waiting on the upstream or app), by hop.",
    );
    for hop in hops {
        histogram(
            out,
            "remora_proxy_overhead_seconds",
            &labels(&hop.labels),
            &hop.overhead,
        );
    }
}
