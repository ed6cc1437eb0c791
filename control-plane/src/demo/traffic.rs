//! The demo's steady traffic (playing the `web` app calling `orders` through its
//! proxy) and what it observed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

#[derive(Default)]
pub struct Stats {
    pub total: u64,
    pub errors: u64,
    pub by_backend: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
}

impl Stats {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
        sorted.get(index).copied().unwrap_or_default()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests:", self.total)?;
        for (backend, n) in &self.by_backend {
            let share = 100.0 * *n as f64 / self.total.max(1) as f64;
            write!(f, "  {backend} {n} ({share:.0}%)")?;
        }
        write!(
            f,
            "  errors {}  p50 {:.1} ms  p99 {:.1} ms",
            self.errors,
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
        )
    }
}

pub struct Driver {
    stats: Arc<Mutex<Stats>>,
    task: JoinHandle<()>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

const MAX_IN_FLIGHT: u32 = 256;

impl Driver {
    pub fn start(entry: SocketAddr, host: &'static str, rate: u32) -> Driver {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT as usize));
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let period = Duration::from_secs(1) / rate.max(1);
        let task = {
            let stats = stats.clone();
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
                loop {
                    tick.tick().await;
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        return;
                    };
                    let (client, stats) = (client.clone(), stats.clone());
                    tokio::spawn(async move {
                        let outcome = call(&client, entry, host).await;
                        let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                        s.total += 1;
                        match outcome {
                            Ok((backend, latency)) => {
                                *s.by_backend.entry(backend).or_default() += 1;
                                s.latencies.push(latency);
                            }
                            Err(()) => s.errors += 1,
                        }
                        drop(permit);
                    });
                }
            })
        };
        Driver {
            stats,
            task,
            in_flight,
        }
    }

    /// Forgets what was observed so far (requests still in flight count later).
    pub fn reset(&self) {
        drop(self.take());
    }

    pub fn take(&self) -> Stats {
        std::mem::take(&mut *self.stats.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops sending and waits for requests in flight.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.in_flight.acquire_many(MAX_IN_FLIGHT).await;
    }
}

async fn call(
    client: &Client<HttpConnector, Empty<Bytes>>,
    entry: SocketAddr,
    host: &str,
) -> Result<(String, Duration), ()> {
    let started = Instant::now();
    let req = Request::get(format!("http://{entry}/"))
        .header(header::HOST, host)
        .body(Empty::new())
        .map_err(|_| ())?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    if !response.status().is_success() {
        return Err(());
    }
    let backend = response
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    response.into_body().collect().await.map_err(|_| ())?;
    Ok((backend, started.elapsed()))
}

/// GETs a JSON document from an admin or API address.
pub async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let uri = format!("http://{addr}{path}");
    let response = client
        .get(uri.parse().map_err(|e| format!("{uri}: {e}"))?)
        .await
        .map_err(|e| format!("GET {uri}: {e}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {uri}: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("GET {uri}: not JSON: {e}"))
}

/// The status code of a GET, or `None` if there was no answer.
pub async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let uri = format!("http://{addr}{path}").parse().ok()?;
    client.get(uri).await.ok().map(|r| r.status().as_u16())
}
