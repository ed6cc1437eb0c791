//! A running load: start it, watch it, stop it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use http::{HeaderValue, Uri};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connection::{Target, Worker};
use super::sample::Sample;
use super::sink::{SampleBuffer, SharedSamples};
use super::spec::{LoadMode, LoadSpec};
use super::stats::Report;

/// A load in progress. Dropping it stops it (without a report).
pub struct Load {
    start: Instant,
    configured: Option<Duration>,
    shared: Vec<Arc<SharedSamples>>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Start the load now. Needs a tokio runtime.
    ///
    /// # Panics
    /// If the spec is invalid (see [`Load::try_start`]); tests pass literals.
    pub fn start(spec: LoadSpec) -> Load {
        match Self::try_start(spec) {
            Ok(load) => load,
            Err(e) => panic!("invalid load: {e:#}"),
        }
    }

    /// Start the load now, or say what is wrong with `spec`: a `host` that is not
    /// a header value, a `path` that is not a URI path, no connections, or a rate
    /// that is not positive.
    pub fn try_start(spec: LoadSpec) -> Result<Load> {
        let host = HeaderValue::from_str(&spec.host)
            .with_context(|| format!("host `{}` is not a valid header value", spec.host))?;
        let uri: Uri = spec
            .path
            .parse()
            .with_context(|| format!("path `{}` is not a valid request path", spec.path))?;
        if uri.scheme().is_some() || !spec.path.starts_with('/') {
            return Err(anyhow!("path `{}` must start with `/`", spec.path));
        }
        if spec.connections == 0 {
            return Err(anyhow!("connections must be at least 1"));
        }
        if let LoadMode::Rate(rate) = spec.mode {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(anyhow!(
                    "rate must be a positive number of requests per second, not {rate}"
                ));
            }
        }
        let start = Instant::now();
        let target = Arc::new(Target {
            addr: spec.target,
            host,
            uri,
            timeout: spec.timeout,
            mode: spec.mode,
            connections: spec.connections,
            start,
            end: spec.duration.map(|d| start + d),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut shared = Vec::with_capacity(spec.connections);
        let mut workers = Vec::with_capacity(spec.connections);
        for index in 0..spec.connections {
            let samples = Arc::new(SharedSamples::default());
            shared.push(samples.clone());
            let worker = Worker {
                index,
                target: target.clone(),
                stop: stop_rx.clone(),
                samples: SampleBuffer::new(samples),
            };
            workers.push(tokio::spawn(worker.run()));
        }
        tracing::debug!(target = %spec.target, host = %spec.host, mode = ?spec.mode, connections = spec.connections, "load started");
        Ok(Load {
            start,
            configured: spec.duration,
            shared,
            stop,
            workers,
        })
    }

    /// Time since the load started: the `at` of a sample completing now.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The samples completed at or after `since` so far, in completion order (at
    /// most ~10 ms behind the live traffic).
    pub fn snapshot_since(&self, since: Duration) -> Vec<Sample> {
        let mut samples = Vec::new();
        for shared in &self.shared {
            shared.copy_since(since, &mut samples);
        }
        samples.sort_by_key(|s| s.at);
        samples
    }

    /// Stop sending, let requests in flight finish (up to a second), and report.
    /// The report covers the time until the stop (at most the spec's duration).
    pub async fn stop(mut self) -> Report {
        let _ = self.stop.send(true);
        let stopped_at = self.start.elapsed();
        let covered = match self.configured {
            Some(configured) => configured.min(stopped_at),
            None => stopped_at,
        };
        self.collect(covered).await
    }

    /// Wait until the spec's `duration` has run out and the last responses are in,
    /// and report over that duration. Without a duration this is [`Load::stop`].
    pub async fn wait(mut self) -> Report {
        match self.configured {
            Some(configured) => self.collect(configured).await,
            None => self.stop().await,
        }
    }

    async fn collect(&mut self, covered: Duration) -> Report {
        for worker in std::mem::take(&mut self.workers) {
            if let Err(e) = worker.await {
                tracing::warn!(error = %e, "a load connection task failed");
            }
        }
        let mut samples = Vec::new();
        for shared in &self.shared {
            samples.append(&mut shared.take());
        }
        Report::from_samples(samples, covered)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for worker in &self.workers {
            worker.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::TestApp;
    use crate::load::LoadSpec;

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let addr = "127.0.0.1:1".parse().unwrap();
        let err = |spec| Load::try_start(spec).err().unwrap().to_string();
        assert!(err(LoadSpec::max(addr, "a\nb")).contains("host"));
        assert!(err(LoadSpec::max(addr, "a").path("x")).contains("must start with `/`"));
        assert!(err(LoadSpec::max(addr, "a").connections(0)).contains("connections"));
        assert!(err(LoadSpec::rate(addr, "a", 0.0)).contains("rate"));
    }

    #[tokio::test]
    async fn fixed_rate_sends_about_the_rate_and_records_backends() {
        let app = TestApp::http("alpha");
        let load = Load::start(
            LoadSpec::rate(app.addr, "alpha.test", 200.0)
                .connections(4)
                .duration(Duration::from_millis(500)),
        );
        let report = load.wait().await;
        assert_eq!(
            report.errors,
            0,
            "{:?}",
            &report.samples[..report.samples.len().min(5)]
        );
        assert_eq!(report.total, 100);
        assert_eq!(report.duration, Duration::from_millis(500));
        assert_eq!(report.rps, 200.0);
        assert_eq!(report.share_of("alpha", ..), 1.0);
        assert!(report.p50 > Duration::ZERO);
        assert_eq!(app.requests(), 100);
    }

    #[tokio::test]
    async fn max_mode_can_be_watched_and_stopped() {
        let app = TestApp::http("beta");
        let load = Load::start(LoadSpec::max(app.addr, "beta").connections(2));
        crate::harness::wait_for(Duration::from_secs(5), || async {
            load.snapshot_since(Duration::ZERO).len() > 50
        })
        .await
        .unwrap();
        let report = load.stop().await;
        assert!(report.total > 50);
        assert_eq!(report.errors, 0);
        assert!(report.rps > 0.0);
    }

    #[tokio::test]
    async fn a_dead_target_gives_transport_errors() {
        let addr = {
            let app = TestApp::http("gone");
            app.addr
        };
        let report = Load::start(
            LoadSpec::rate(addr, "gone", 100.0)
                .connections(1)
                .duration(Duration::from_millis(200)),
        )
        .wait()
        .await;
        assert_eq!(report.total, 20);
        assert_eq!(report.errors, 20);
        assert!(report.samples.iter().all(|s| s.status == 0));
    }
}
