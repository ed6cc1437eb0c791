//! `remora stat`'s table: one line per edge. A Service whose route sends its
//! requests to other Services has its own line (`web -> orders`), followed by
//! one per backend (`web -> orders -> orders-v1`).

use std::fmt::Write;

use super::{Edge, ServiceRef, StatView};

/// A line's sort key (source, the Service called, 0 for its own line or 1 for
/// a backend's, the backend) and its edge.
type Line<'a> = ((String, String, u8, String), &'a Edge);

pub fn render(view: &StatView) -> String {
    let mut out = String::new();
    let name = |r: &ServiceRef| format!("{}.{}", r.service, r.namespace);
    // Sorted so a parent's line comes first and its backends follow it.
    let mut lines: Vec<Line<'_>> = view
        .parents
        .iter()
        .map(|e| ((name(&e.source), name(&e.destination), 0, String::new()), e))
        .chain(view.edges.iter().map(|e| {
            let key = match &e.parent {
                Some(p) => (name(&e.source), name(p), 1, name(&e.destination)),
                None => (name(&e.source), name(&e.destination), 0, String::new()),
            };
            (key, e)
        }))
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<[String; 7]> = lines
        .iter()
        .map(|((source, called, _, backend), e)| {
            let path = if backend.is_empty() {
                format!("{source} -> {called}")
            } else {
                format!("{source} -> {called} -> {backend}")
            };
            [
                path,
                format!("{:.2}%", e.success_rate * 100.0),
                format!("{:.1}", e.requests_per_second),
                millis(e.latency_ms_p50),
                millis(e.latency_ms_p95),
                millis(e.latency_ms_p99),
                millis(e.overhead_ms),
            ]
        })
        .collect();
    let header = [
        "SRC -> DST",
        "SUCCESS",
        "RPS",
        "P50",
        "P95",
        "P99",
        "OVERHEAD",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(text, "{cell:<w$}", w = widths[i]);
            } else {
                let _ = write!(text, "  {cell:>w$}", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if view.edges.is_empty() {
        let _ = writeln!(
            out,
            "(no traffic reported in the last {}s)",
            view.window_seconds
        );
    }
    out
}

fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1e3)
    } else {
        format!("{ms:.1}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(source: &str, destination: &str, parent: Option<&str>, rps: f64) -> Edge {
        let r = |s: &str| ServiceRef {
            service: s.into(),
            namespace: "default".into(),
        };
        Edge {
            source: r(source),
            destination: r(destination),
            parent: parent.map(r),
            requests: 10,
            failures: 0,
            requests_per_second: rps,
            success_rate: 1.0,
            latency_ms_p50: 1.0,
            latency_ms_p95: 2.0,
            latency_ms_p99: 3.0,
            overhead_ms: 0.2,
            outbound_overhead_ms: 0.1,
            inbound_overhead_ms: 0.1,
            proxies: 1,
        }
    }

    #[test]
    fn a_parent_comes_before_its_backends() {
        let view = StatView {
            window_seconds: 30.0,
            edges: vec![
                edge("web", "orders-v1", Some("orders"), 90.0),
                edge("web", "orders-v2", Some("orders"), 10.0),
                edge("web", "payments", None, 5.0),
            ],
            parents: vec![edge("web", "orders", None, 100.0)],
        };
        let table = render(&view);
        let first: Vec<&str> = table
            .lines()
            .skip(1)
            .map(|l| l.split("  ").next().unwrap_or_default().trim())
            .collect();
        assert_eq!(
            first,
            [
                "web.default -> orders.default",
                "web.default -> orders.default -> orders-v1.default",
                "web.default -> orders.default -> orders-v2.default",
                "web.default -> payments.default",
            ],
            "{table}"
        );
        assert!(table.lines().nth(1).unwrap().contains("100.0"), "{table}");
    }
}
