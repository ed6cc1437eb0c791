//! One load connection: a task that keeps one HTTP/1.1 keep-alive connection,
//! sends one request at a time on the schedule, and records each outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sample::Sample;
use super::sink::SampleBuffer;
use super::spec::{due_offset, LoadMode};

/// An in-flight request gets this long to finish once the load is stopped.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// In max mode, wait this long after a failed connect before the next one.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);
/// Distinct `x-backend` values remembered per connection (to share their `Arc`s).
const BACKEND_CACHE: usize = 64;

/// What every connection of a load sends, validated once.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host: HeaderValue,
    pub(crate) uri: Uri,
    pub(crate) timeout: Duration,
    pub(crate) mode: LoadMode,
    pub(crate) connections: usize,
    pub(crate) start: Instant,
    pub(crate) end: Option<Instant>,
}

/// The worker for connection number `index`.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) target: Arc<Target>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) samples: SampleBuffer,
}

/// An open connection; its driver task is aborted when it is dropped.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The result of one attempt.
struct Outcome {
    /// 0 = transport error.
    status: u16,
    backend: Option<Arc<str>>,
    /// The connection could not even be opened.
    connect_failed: bool,
}

impl Outcome {
    fn failed(connect_failed: bool) -> Self {
        Self {
            status: 0,
            backend: None,
            connect_failed,
        }
    }
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let target = self.target.clone();
        let mut conn: Option<Conn> = None;
        let mut backends: Vec<Arc<str>> = Vec::new();
        let mut previous_done = target.start;
        let mut k: u64 = 0;
        loop {
            if self.stopped() {
                break;
            }
            let due = match target.mode {
                LoadMode::Rate(rate) => {
                    Some(target.start + due_offset(self.index, k, target.connections, rate))
                }
                LoadMode::Max => None,
            };
            let next = due.unwrap_or_else(Instant::now);
            if target.end.is_some_and(|end| next >= end) {
                break;
            }
            if let Some(due) = due {
                if due > Instant::now() && !self.sleep_until(due).await {
                    break;
                }
            }
            let sent = Instant::now();
            // Busy past the due time: the wait counts (no coordinated omission).
            let latency_from = match due {
                Some(due) if previous_done > due => due,
                _ => sent,
            };
            let outcome = {
                let attempt = send_one(&target, &mut conn, &mut backends);
                tokio::pin!(attempt);
                let mut stop = self.stop.clone();
                tokio::select! {
                    outcome = &mut attempt => Some(outcome),
                    _ = stopped(&mut stop) => {
                        tokio::time::timeout(STOP_GRACE, &mut attempt).await.ok()
                    }
                }
            };
            let Some(outcome) = outcome else {
                break; // stopped while in flight, and not done within the grace
            };
            let done = Instant::now();
            previous_done = done;
            k += 1;
            if outcome.status == 0 {
                conn = None;
            }
            self.samples.push(
                Sample {
                    at: done.duration_since(target.start),
                    status: outcome.status,
                    backend: outcome.backend,
                    latency: done.duration_since(latency_from),
                },
                done,
            );
            if outcome.connect_failed
                && target.mode == LoadMode::Max
                && !self.sleep_until(Instant::now() + RECONNECT_PAUSE).await
            {
                break;
            }
        }
        self.samples.flush(Instant::now());
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleep until `deadline`; false if the load was stopped meanwhile.
    async fn sleep_until(&mut self, deadline: Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => true,
            _ = stopped(&mut self.stop) => false,
        }
    }
}

/// Resolves once the load is stopped (or dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: the load was dropped, so stop too.
    let _ = stop.wait_for(|s| *s).await;
}

/// One request on `conn` (opening it if needed), within the target's timeout.
async fn send_one(
    target: &Target,
    conn: &mut Option<Conn>,
    backends: &mut Vec<Arc<str>>,
) -> Outcome {
    match tokio::time::timeout(target.timeout, attempt(target, conn, backends)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            *conn = None;
            Outcome::failed(false)
        }
    }
}

async fn attempt(
    target: &Target,
    conn: &mut Option<Conn>,
    backends: &mut Vec<Arc<str>>,
) -> Outcome {
    // A request refused before it was written (the server closed the idle
    // connection at that moment) is tried once more on a new connection, as a
    // pooling client would.
    for retry in [false, true] {
        let sender = match ready_sender(target, conn).await {
            Some(sender) => sender,
            None => return Outcome::failed(true),
        };
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = target.uri.clone();
        request.headers_mut().insert(HOST, target.host.clone());
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                *conn = None;
                if e.is_canceled() && !retry {
                    continue;
                }
                tracing::debug!(error = %e, "load request failed");
                return Outcome::failed(false);
            }
        };
        let status = response.status().as_u16();
        let backend = response
            .headers()
            .get(crate::app::http::BACKEND_HEADER)
            .map(|v| intern(backends, v.as_bytes()));
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Err(e) = frame {
                tracing::debug!(error = %e, "load response body failed");
                *conn = None;
                return Outcome::failed(false);
            }
        }
        return Outcome {
            status,
            backend,
            connect_failed: false,
        };
    }
    Outcome::failed(false)
}

/// The sender of a connection ready for a request, opening one if there is none
/// or the old one closed. `None` if a new connection cannot be opened.
async fn ready_sender<'c>(
    target: &Target,
    conn: &'c mut Option<Conn>,
) -> Option<&'c mut SendRequest<Empty<Bytes>>> {
    if let Some(open) = conn {
        if open.sender.ready().await.is_err() {
            *conn = None;
        }
    }
    if conn.is_none() {
        *conn = Some(connect(target.addr).await?);
    }
    conn.as_mut().map(|c| &mut c.sender)
}

async fn connect(addr: SocketAddr) -> Option<Conn> {
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "load connect failed");
            return None;
        }
    };
    stream.set_nodelay(true).ok();
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "load handshake failed");
                return None;
            }
        };
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "load connection ended");
        }
    });
    if sender.ready().await.is_err() {
        driver.abort();
        return None;
    }
    Some(Conn { sender, driver })
}

/// The shared `Arc<str>` for a backend name, so a sample costs no allocation.
fn intern(cache: &mut Vec<Arc<str>>, name: &[u8]) -> Arc<str> {
    if let Some(known) = cache.iter().find(|b| b.as_bytes() == name) {
        return known.clone();
    }
    let new: Arc<str> = Arc::from(String::from_utf8_lossy(name).as_ref());
    if cache.len() < BACKEND_CACHE {
        cache.push(new.clone());
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_are_shared_not_copied() {
        let mut cache = Vec::new();
        let a1 = intern(&mut cache, b"a");
        let a2 = intern(&mut cache, b"a");
        let b = intern(&mut cache, b"b");
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(&*b, "b");
        assert_eq!(cache.len(), 2);
    }
}
