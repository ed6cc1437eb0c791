//! `/metrics`: every series of the proxy, rendered from what the request path
//! counted (hops, clusters, inbound connections) and what the admin side knows
//! (xDS state, the certificate).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::UNIX_EPOCH;

use crate::http::InboundStats;
use crate::identity::CertStore;
use crate::snapshot::Snapshot;
use crate::telemetry::render::{header, hops, labels, sample};
use crate::telemetry::Metrics;
use crate::xds::XdsStatus;

pub struct Sources<'a> {
    pub metrics: &'a Metrics,
    pub snapshot: &'a Snapshot,
    pub inbound: &'a InboundStats,
    pub xds: &'a XdsStatus,
    pub certificate: Option<&'a CertStore>,
    pub detect: &'a crate::detect::DetectStats,
}

pub fn render(s: &Sources<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let mut all = s.metrics.hops();
    all.extend(s.metrics.inbound());
    hops(&mut out, &all);

    if let Some(tracer) = &s.metrics.tracer {
        traces(&mut out, &tracer.stats);
    }
    clusters(&mut out, s.snapshot);
    tcp(&mut out);
    s.metrics.tcp.render(&mut out);
    s.detect.render(&mut out);
    inbound(&mut out, s.inbound);
    xds(&mut out, s.xds);
    if let Some(store) = s.certificate {
        header(
            &mut out,
            "remora_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the workload certificate expires (seconds since the Unix epoch).",
        );
        if let Some(c) = &*store.load() {
            let at = c
                .not_after
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            sample(
                &mut out,
                "remora_certificate_expiry_timestamp_seconds",
                &labels(&[("identity", c.identity.clone())]),
                at,
            );
        }
    }
    out
}

/// The resilience counters of every cluster, one series per counter and cluster.
fn clusters(out: &mut String, snapshot: &Snapshot) {
    let mut clusters: Vec<_> = snapshot.clusters.values().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    type Pick = fn(&crate::upstream::ClusterStats) -> &AtomicU64;
    /// Name, help (empty: same family as the line before), extra labels, counter.
    type Counter = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        Pick,
    );
    let counters: [Counter; 15] = [
        ("remora_retries_total", "Retries sent.", &[], |s| &s.retries),
        (
            "remora_retry_budget_exhausted_total",
            "Failures not retried because the retry budget was spent.",
            &[],
            |s| &s.retry_budget_exhausted,
        ),
        (
            "remora_retry_body_not_replayable_total",
            "Failures not retried because the request body could not be replayed.",
            &[],
            |s| &s.retry_body_not_replayable,
        ),
        (
            "remora_timeouts_total",
            "Requests or attempts that timed out, by kind.",
            &[("kind", "request")],
            |s| &s.timeouts_request,
        ),
        ("remora_timeouts_total", "", &[("kind", "per_try")], |s| {
            &s.timeouts_per_try
        }),
        ("remora_timeouts_total", "", &[("kind", "connect")], |s| {
            &s.timeouts_connect
        }),
        (
            "remora_ejections_total",
            "Endpoints ejected by outlier detection.",
            &[],
            |s| &s.ejections,
        ),
        (
            "remora_limit_rejections_total",
            "Requests refused by a limit, by kind.",
            &[("kind", "concurrency")],
            |s| &s.overflow,
        ),
        (
            "remora_limit_rejections_total",
            "",
            &[("kind", "rate")],
            |s| &s.rate_limited,
        ),
        (
            "remora_upstream_overflow_total",
            "Requests and opaque connections refused by a circuit breaker, by limit.",
            &[("limit", "max_requests")],
            |s| &s.overflow_max_requests,
        ),
        (
            "remora_upstream_overflow_total",
            "",
            &[("limit", "max_connections")],
            |s| &s.overflow_max_connections,
        ),
        (
            "remora_upstream_overflow_total",
            "",
            &[("limit", "max_pending_requests")],
            |s| &s.overflow_max_pending_requests,
        ),
        (
            "remora_faults_injected_total",
            "Requests given an injected fault, by kind.",
            &[("kind", "abort")],
            |s| &s.faults_aborted,
        ),
        (
            "remora_faults_injected_total",
            "",
            &[("kind", "delay")],
            |s| &s.faults_delayed,
        ),
        (
            "remora_mirrored_requests_total",
            "Request copies sent by a mirror.",
            &[],
            |s| &s.mirrored,
        ),
    ];
    for (name, help, extra, pick) in counters {
        if !help.is_empty() {
            header(out, name, "counter", help);
        }
        for c in &clusters {
            let mut l: Vec<(&str, String)> = vec![("backend", c.name.to_string())];
            l.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            sample(out, name, &labels(&l), pick(&c.state.stats).load(Relaxed));
        }
    }
}

fn inbound(out: &mut String, s: &InboundStats) {
    header(
        out,
        "remora_inbound_connections_total",
        "counter",
        "Connections to the inbound listener, by transport and outcome.",
    );
    for (transport, result, c) in [
        ("mtls", "accepted", &s.mtls_accepted),
        ("mtls", "refused", &s.mtls_refused),
        ("plaintext", "accepted", &s.plaintext_accepted),
        ("plaintext", "refused", &s.plaintext_refused),
    ] {
        let l = format!("transport=\"{transport}\",result=\"{result}\"");
        sample(out, "remora_inbound_connections_total", &l, c.load(Relaxed));
    }
    header(
        out,
        "remora_inbound_requests_denied_total",
        "counter",
        "Inbound requests denied by authorization.",
    );
    sample(
        out,
        "remora_inbound_requests_denied_total",
        "",
        s.requests_denied.load(Relaxed),
    );
    header(
        out,
        "remora_inbound_rate_limited_total",
        "counter",
        "Inbound requests refused by the rate limit.",
    );
    sample(
        out,
        "remora_inbound_rate_limited_total",
        "",
        s.rate_limited.load(Relaxed),
    );
}

fn xds(out: &mut String, status: &XdsStatus) {
    let view = status.view();
    header(
        out,
        "remora_xds_connected",
        "gauge",
        "Whether the xDS stream is up.",
    );
    sample(out, "remora_xds_connected", "", u8::from(view.connected));
    header(
        out,
        "remora_xds_config_info",
        "gauge",
        "The accepted config version per type (always 1).",
    );
    for (url, t) in &view.types {
        let l = labels(&[
            ("type_url", (*url).to_owned()),
            ("version", t.version.clone()),
        ]);
        sample(out, "remora_xds_config_info", &l, 1);
    }
    header(
        out,
        "remora_xds_updates_total",
        "counter",
        "xDS responses accepted, by type.",
    );
    for (url, t) in &view.types {
        sample(
            out,
            "remora_xds_updates_total",
            &labels(&[("type_url", (*url).to_owned())]),
            t.updates,
        );
    }
    header(
        out,
        "remora_xds_nacks_total",
        "counter",
        "xDS responses rejected, by type.",
    );
    for (url, t) in &view.types {
        sample(
            out,
            "remora_xds_nacks_total",
            &labels(&[("type_url", (*url).to_owned())]),
            t.nacks,
        );
    }
    header(
        out,
        "remora_xds_last_update_timestamp_seconds",
        "gauge",
        "When a response of the type was last accepted.",
    );
    for (url, t) in &view.types {
        sample(
            out,
            "remora_xds_last_update_timestamp_seconds",
            &labels(&[("type_url", (*url).to_owned())]),
            t.last_update_unix,
        );
    }
}

fn traces(out: &mut String, s: &crate::telemetry::trace::TraceStats) {
    header(
        out,
        "remora_trace_spans_exported_total",
        "counter",
        "Spans the collector accepted.",
    );
    sample(
        out,
        "remora_trace_spans_exported_total",
        "",
        s.exported.load(Relaxed),
    );
    header(
        out,
        "remora_trace_spans_dropped_total",
        "counter",
        "Spans lost, by reason: the queue was full, or the collector refused or could not be reached.",
    );
    for (reason, c) in [
        ("queue_full", &s.dropped_queue_full),
        ("export_failed", &s.dropped_export_failed),
    ] {
        let l = format!("reason=\"{reason}\"");
        sample(out, "remora_trace_spans_dropped_total", &l, c.load(Relaxed));
    }
}

/// Connections and bytes by direction and peer (`src`: accepted, `dst`: opened).
fn tcp(out: &mut String) {
    use crate::telemetry::tcp::{TcpCounters, TCP};
    type Pick = fn(&TcpCounters) -> u64;
    let families: [(&str, &str, &str, Pick); 6] = [
        (
            "remora_tcp_connections_opened_total",
            "counter",
            "TCP connections opened, by direction and peer (src: accepted, dst: made by the proxy).",
            |c| c.opened.load(Relaxed),
        ),
        (
            "remora_tcp_connections_closed_total",
            "counter",
            "TCP connections closed, by direction and peer.",
            |c| c.closed.load(Relaxed),
        ),
        (
            "remora_tcp_connections_open",
            "gauge",
            "TCP connections open now, by direction and peer.",
            |c| {
                // Read closed first: a connection opened in between only adds.
                let closed = c.closed.load(Relaxed);
                c.opened.load(Relaxed).saturating_sub(closed)
            },
        ),
        (
            "remora_tcp_connections_refused_total",
            "counter",
            "Connections a listener closed at once because it was at its limit (peer src), by direction.",
            |c| c.refused.load(Relaxed),
        ),
        (
            "remora_tcp_read_bytes_total",
            "counter",
            "Bytes read from TCP peers (on the wire, TLS included), by direction and peer.",
            |c| c.read_bytes.load(Relaxed),
        ),
        (
            "remora_tcp_write_bytes_total",
            "counter",
            "Bytes written to TCP peers (on the wire, TLS included), by direction and peer.",
            |c| c.written_bytes.load(Relaxed),
        ),
    ];
    for (name, kind, help, pick) in families {
        header(out, name, kind, help);
        for (direction, peer, counters) in TCP.all() {
            let l = format!("direction=\"{direction}\",peer=\"{peer}\"");
            sample(out, name, &l, pick(counters));
        }
    }
}
