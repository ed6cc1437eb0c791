//! Detection outcomes per direction and port, so an operator sees which ports
//! time out (server-first protocols worth declaring `tcp`) or are not what they
//! were thought to be.
//!
//! One increment per connection, so a mutex is cheap enough. The number of
//! distinct ports is capped: a scan of every port must not grow the map (or the
//! `/metrics` page) without bound; ports past the cap are counted together.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};

/// Which listener accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// The outcomes counted, in the order they are rendered: the labels of
/// [`super::Protocol::label`], and `skipped` for a port whose protocol was
/// declared (or known opaque) so nothing was read.
pub const OUTCOMES: [&str; OUTCOME_COUNT] = ["http1", "h2", "tls", "opaque", "timeout", "skipped"];

/// Distinct `(direction, port)` series kept; past it, ports count as port 0.
pub const MAX_PORTS: usize = 512;

/// Port 0 is never a destination, so it holds the ports past the cap.
const OTHER_PORT: u16 = 0;

const METRIC: &str = "remora_protocol_detect_total";
const HELP: &str =
    "Connections by the protocol detected on them, per direction and destination port.";

const OUTCOME_COUNT: usize = 6;

type Counts = [u64; OUTCOME_COUNT];

#[derive(Debug, Default)]
pub struct DetectStats {
    counts: Mutex<HashMap<(Direction, u16), Counts>>,
}

impl DetectStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one connection. `outcome` is one of [`OUTCOMES`].
    pub fn record(&self, direction: Direction, port: u16, outcome: &'static str) {
        let Some(index) = OUTCOMES.iter().position(|o| *o == outcome) else {
            tracing::debug!(outcome, "not a detection outcome; not counted");
            return;
        };
        // A panic elsewhere while holding the lock leaves counts that are still
        // counts: keep using them.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if counts.contains_key(&(direction, port)) || counts.len() < MAX_PORTS {
            (direction, port)
        } else {
            (direction, OTHER_PORT)
        };
        counts.entry(key).or_default()[index] += 1;
    }

    /// `remora_protocol_detect_total` in the Prometheus text format, sorted by
    /// direction, then port (the ports past the cap last, as `port="other"`),
    /// then outcome. Outcomes never seen on a port are left out.
    pub fn render(&self, out: &mut String) {
        let mut rows: Vec<((Direction, u16), Counts)> = {
            let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            counts.iter().map(|(key, c)| (*key, *c)).collect()
        };
        rows.sort_by_key(|&((direction, port), _)| (direction, port == OTHER_PORT, port));
        let _ = writeln!(out, "# HELP {METRIC} {HELP}");
        let _ = writeln!(out, "# TYPE {METRIC} counter");
        for ((direction, port), counts) in rows {
            let port = port_label(port);
            for (outcome, count) in OUTCOMES.iter().zip(counts) {
                if count == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{METRIC}{{direction=\"{}\",port=\"{port}\",outcome=\"{outcome}\"}} {count}",
                    direction.label()
                );
            }
        }
    }
}

fn port_label(port: u16) -> String {
    if port == OTHER_PORT {
        "other".to_owned()
    } else {
        port.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(stats: &DetectStats) -> String {
        let mut out = String::new();
        stats.render(&mut out);
        out
    }

    #[test]
    fn renders_counters_sorted_by_direction_port_and_outcome() {
        let stats = DetectStats::new();
        stats.record(Direction::Inbound, 8080, "http1");
        stats.record(Direction::Outbound, 6379, "opaque");
        stats.record(Direction::Outbound, 6379, "opaque");
        stats.record(Direction::Outbound, 6379, "opaque");
        stats.record(Direction::Outbound, 443, "tls");
        stats.record(Direction::Outbound, 6379, "timeout");
        stats.record(Direction::Outbound, 3306, "skipped");
        assert_eq!(
            rendered(&stats),
            "# HELP remora_protocol_detect_total Connections by the protocol detected on them, per direction and destination port.\n\
             # TYPE remora_protocol_detect_total counter\n\
             remora_protocol_detect_total{direction=\"outbound\",port=\"443\",outcome=\"tls\"} 1\n\
             remora_protocol_detect_total{direction=\"outbound\",port=\"3306\",outcome=\"skipped\"} 1\n\
             remora_protocol_detect_total{direction=\"outbound\",port=\"6379\",outcome=\"opaque\"} 3\n\
             remora_protocol_detect_total{direction=\"outbound\",port=\"6379\",outcome=\"timeout\"} 1\n\
             remora_protocol_detect_total{direction=\"inbound\",port=\"8080\",outcome=\"http1\"} 1\n"
        );
    }

    #[test]
    fn ports_past_the_cap_count_as_other() {
        let stats = DetectStats::new();
        for port in 1..=600 {
            stats.record(Direction::Outbound, port, "h2");
        }
        // A port seen before the cap keeps its own series.
        stats.record(Direction::Outbound, 7, "h2");
        let out = rendered(&stats);
        assert!(out.contains("port=\"7\",outcome=\"h2\"} 2\n"), "{out}");
        assert!(out.contains("port=\"512\",outcome=\"h2\"} 1\n"), "{out}");
        assert!(!out.contains("port=\"513\""), "{out}");
        assert!(out.ends_with("{direction=\"outbound\",port=\"other\",outcome=\"h2\"} 88\n"));
        assert_eq!(out.lines().count(), 2 + MAX_PORTS + 1);
    }

    #[test]
    fn an_unknown_outcome_is_not_counted() {
        let stats = DetectStats::new();
        stats.record(Direction::Inbound, 80, "gopher");
        assert_eq!(rendered(&stats).lines().count(), 2);
    }
}
