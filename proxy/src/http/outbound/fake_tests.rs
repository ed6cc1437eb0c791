//! Stand-ins for the layers below the one under test, and the cluster and
//! requests the layer tests share. A stand-in is borrowed by the layer
//! (`SomeLayer.layer(&app)`), so the test reads what it saw afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use super::deadline::Deadline;
use super::endpoint::Sent;
use super::retry::Attempted;
use super::service::{Attempt, Picked, Routed, Serve};
use crate::balance::Balancer;
use crate::http::ResponseBody;
use crate::resilience::BudgetConfig;
use crate::upstream::{Cluster, Protocol, RequestBody, UpstreamError, WeightedEndpoint};

/// A cluster named `orders` with `endpoints`, Remora's defaults otherwise.
pub fn cluster(endpoints: Vec<WeightedEndpoint>) -> Cluster {
    Cluster {
        name: "orders".into(),
        destination: ("orders".into(), "default".into()),
        destination_identity: String::new(),
        protocol: Protocol::Http2,
        endpoints,
        retry_budget: BudgetConfig::DEFAULT,
        balancer: Balancer::PeakEwma,
        outlier: None,
        limits: crate::upstream::Limits::default(),
        concurrency: None,
        fault: None,
        target_port: None,
        state: Arc::default(),
    }
}

/// A GET of `http://orders/` with no body.
pub fn request() -> Request<RequestBody> {
    Request::builder()
        .uri("http://orders/")
        .body(RequestBody::Empty)
        .unwrap()
}

pub fn orders() -> Authority {
    Authority::from_static("orders")
}

/// An upstream's answer with `status` and no body.
pub fn answer(status: u16) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Right(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// The value of one of a cluster's counters.
pub fn n(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// What a routed request carried when it reached the stand-in.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authority: String,
    pub cluster: String,
    pub headers: HeaderMap,
    pub hash: Option<u64>,
    pub grpc: bool,
    pub deadline: Option<Deadline>,
}

/// Below a request layer: answers `status` after `delay`.
pub struct App {
    status: u16,
    delay: Duration,
    pub seen: Mutex<Vec<Seen>>,
}

impl App {
    pub fn answering(status: u16, delay: Duration) -> Self {
        Self {
            status,
            delay,
            seen: Mutex::default(),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl<'r> Serve<Routed<'r>> for &App {
    type Response = Response<ResponseBody>;

    async fn call(&self, routed: Routed<'r>) -> Response<ResponseBody> {
        let seen = Seen {
            authority: routed.authority.to_string(),
            cluster: routed.cluster.name.to_string(),
            headers: routed.req.headers().clone(),
            hash: routed.hash,
            grpc: routed.grpc,
            deadline: routed.deadline,
        };
        drop(routed);
        self.seen.lock().unwrap().push(seen);
        tokio::time::sleep(self.delay).await;
        answer(self.status)
    }
}

/// How the stand-in upstream answers one attempt.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// This status, after this long.
    Answer(u16, Duration),
    /// Nothing reached it.
    ConnectFailure,
}

/// Below the retry layer: answers the attempts as `script` says, in order; the
/// last step repeats. Notes when each attempt started and its deadline.
pub struct Upstream {
    script: Vec<Step>,
    pub attempts: Mutex<Vec<(Instant, Option<Instant>)>>,
}

impl Upstream {
    pub fn new(script: &[Step]) -> Self {
        Self {
            script: script.to_vec(),
            attempts: Mutex::default(),
        }
    }

    pub fn attempts(&self) -> Vec<(Instant, Option<Instant>)> {
        self.attempts.lock().unwrap().clone()
    }
}

impl<'r> Serve<Attempt<'r>> for &Upstream {
    type Response = Attempted;

    async fn call(&self, attempt: Attempt<'r>) -> Attempted {
        let step = {
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push((Instant::now(), attempt.deadline));
            self.script[(attempts.len() - 1).min(self.script.len() - 1)]
        };
        drop(attempt);
        match step {
            Step::Answer(status, delay) => {
                tokio::time::sleep(delay).await;
                Ok(answer(status))
            }
            Step::ConnectFailure => Err(connect_failure()),
        }
    }
}

pub fn connect_failure() -> UpstreamError {
    UpstreamError::Connect {
        addr: ([127, 0, 0, 1], 9).into(),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    }
}

/// Below the balancer: what the endpoint says to every attempt.
pub struct Endpoints(pub fn() -> Sent);

impl<'r> Serve<Picked<'r>> for &Endpoints {
    type Response = Sent;

    async fn call(&self, _: Picked<'r>) -> Sent {
        (self.0)()
    }
}
