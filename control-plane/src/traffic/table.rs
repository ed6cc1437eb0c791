//! `remora stat`'s table: one line per edge.

use std::fmt::Write;

use super::StatView;

pub fn render(view: &StatView) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 7]> = view
        .edges
        .iter()
        .map(|e| {
            [
                format!(
                    "{}.{} -> {}.{}",
                    e.source.service,
                    e.source.namespace,
                    e.destination.service,
                    e.destination.namespace
                ),
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
            .map(|r| r[i].len())
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
