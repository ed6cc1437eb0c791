//! Under continuous load, rewriting the HTTPRoute moves the split with no failed
//! request, and the observed share follows within 2 s of each write.

mod support;

use std::time::Duration;

use remora_tests::load::{Load, LoadSpec};
use support::*;

const RATE: f64 = 250.0;
/// How long each split is measured, after the 2 s allowed for convergence.
const MEASURE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_moves_within_two_seconds_without_errors() {
    let mesh = SplitMesh::start(100, 0).await;

    let started = tokio::time::Instant::now();
    let load = Load::start(LoadSpec::rate(mesh.web.outbound, "orders", RATE).connections(8));
    tokio::time::sleep(MEASURE).await;
    let mut windows = vec![(Duration::ZERO, MEASURE, 0.0)];
    for (v1, v2) in [(50, 50), (0, 100)] {
        let written = started.elapsed();
        mesh.set_split(v1, v2);
        tokio::time::sleep(CONVERGE + MEASURE).await;
        windows.push((
            written + CONVERGE,
            written + CONVERGE + MEASURE,
            f64::from(v2) / 100.0,
        ));
    }
    let report = load.stop().await;

    assert_no_errors(&report);
    assert!(
        report.total as f64 > RATE * 10.0,
        "only {} requests were sent",
        report.total
    );
    for (from, to, expected) in windows {
        let window = report.window(from..to);
        let share = report.share_of("orders-v2", from..to);
        assert!(
            window.total > 300,
            "window {from:?}..{to:?} has only {} samples",
            window.total
        );
        // Each request picks its backend at random, so a window's share is
        // binomial: allow four standard deviations (7 points for 750 requests at
        // 50%; a stuck or misweighted split is far outside), and never under 5.
        let sigma = (expected * (1.0 - expected) / window.total as f64).sqrt();
        let tolerance = (4.0 * sigma).max(0.05);
        assert!(
            (share - expected).abs() <= tolerance,
            "window {from:?}..{to:?}: orders-v2 got {:.1}% of {} requests, configured {:.0}% ± {:.1}; \
             its share by 250 ms since the write: {}",
            share * 100.0,
            window.total,
            expected * 100.0,
            tolerance * 100.0,
            timeline(&report, from.saturating_sub(CONVERGE), to),
        );
    }
}

/// orders-v2's share in each 250 ms from `from` to `to`, to show when a split
/// really moved when a window misses it.
fn timeline(report: &remora_tests::load::Report, from: Duration, to: Duration) -> String {
    let step = Duration::from_millis(250);
    let mut at = from;
    let mut shares = Vec::new();
    while at < to {
        let share = report.share_of("orders-v2", at..at + step);
        shares.push(format!("{:.0}%", share * 100.0));
        at += step;
    }
    shares.join(" ")
}
