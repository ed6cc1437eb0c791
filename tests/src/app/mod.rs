//! Tiny in-process backends for the tests and the benchmark.
//!
//! - [`TestApp::http`]: HTTP/1.1 and h2c; answers 200 with its name, and tells what
//!   it saw (see [`http`] for the headers).
//! - [`TestApp::grpc`]: the `remora.demo.v1.Echo` gRPC service, naming itself as
//!   the backend; [`echo_client`] reaches it directly or through a proxy.
//!
//! A `TestApp` stops when dropped: its listener closes and its open connections are
//! cut, like a process that died.

mod grpc;
pub mod http;
mod server;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

pub use grpc::echo_client;

/// A running backend. Dropping it stops it.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The name it answers with (`x-backend`, the body, `EchoReply.backend`).
    pub name: String,
    state: Arc<AppState>,
    task: JoinHandle<()>,
}

/// What a backend shares between its connections.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) name: Arc<str>,
    pub(crate) requests: AtomicU64,
    /// 0 = answer normally; otherwise the status every HTTP request gets.
    pub(crate) forced_status: AtomicU16,
    /// Per mille of requests that fail: HTTP with `fail_status`, gRPC with
    /// `fail_grpc_code`. Failures are spread evenly (30% is 3 of every 10, never
    /// three in a row), so a test knows what retries can achieve.
    pub(crate) fail_per_mille: AtomicU32,
    pub(crate) fail_counter: AtomicU64,
    pub(crate) fail_status: AtomicU16,
    pub(crate) fail_grpc_code: AtomicU32,
    /// Milliseconds every request waits before it is answered.
    pub(crate) delay_ms: AtomicU64,
    /// Reset the connection instead of answering.
    pub(crate) reset: AtomicBool,
    /// 0: keep connections open; N: close each connection after N requests.
    pub(crate) close_after: AtomicU64,
    /// The next service this app calls before it answers (HTTP only), and the
    /// client it calls with.
    pub(crate) next: std::sync::Mutex<Option<http::Next>>,
}

impl AppState {
    /// Whether this request is one of the failing share.
    pub(crate) fn fails(&self) -> bool {
        let per_mille = u64::from(self.fail_per_mille.load(Ordering::Relaxed));
        if per_mille == 0 {
            return false;
        }
        let n = self.fail_counter.fetch_add(1, Ordering::Relaxed);
        (n + 1) * per_mille / 1000 != n * per_mille / 1000
    }
}

impl AppState {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            requests: AtomicU64::new(0),
            forced_status: AtomicU16::new(0),
            fail_per_mille: AtomicU32::new(0),
            fail_counter: AtomicU64::new(0),
            fail_status: AtomicU16::new(503),
            fail_grpc_code: AtomicU32::new(tonic::Code::Unavailable as u32),
            delay_ms: AtomicU64::new(0),
            reset: AtomicBool::new(false),
            close_after: AtomicU64::new(0),
            next: std::sync::Mutex::new(None),
        })
    }
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

impl TestApp {
    /// An HTTP/1.1 + h2c backend on 127.0.0.1:0.
    ///
    /// # Panics
    /// Outside a tokio runtime, or if no loopback port can be bound.
    pub fn http(name: &str) -> TestApp {
        match Self::try_http(name, loopback_any_port()) {
            Ok(app) => app,
            Err(e) => panic!("cannot start HTTP test app `{name}`: {e:#}"),
        }
    }

    /// An HTTP/1.1 + h2c backend on `listen`. Needs a tokio runtime.
    pub fn try_http(name: &str, listen: SocketAddr) -> Result<TestApp> {
        let listener = bind(listen)?;
        let state = AppState::new(name);
        let addr = listener.local_addr().context("listener has no address")?;
        let task = tokio::spawn(server::serve(listener, state.clone(), http::service));
        tracing::debug!(name, %addr, "HTTP test app up");
        Ok(TestApp {
            addr,
            name: name.to_owned(),
            state,
            task,
        })
    }

    /// A gRPC `remora.demo.v1.Echo` backend on 127.0.0.1:0.
    ///
    /// # Panics
    /// Outside a tokio runtime, or if no loopback port can be bound.
    pub fn grpc(name: &str) -> TestApp {
        match Self::try_grpc(name, loopback_any_port()) {
            Ok(app) => app,
            Err(e) => panic!("cannot start gRPC test app `{name}`: {e:#}"),
        }
    }

    /// A gRPC `remora.demo.v1.Echo` backend on `listen`. Needs a tokio runtime.
    pub fn try_grpc(name: &str, listen: SocketAddr) -> Result<TestApp> {
        let listener = bind(listen)?;
        let state = AppState::new(name);
        let addr = listener.local_addr().context("listener has no address")?;
        let task = tokio::spawn(server::serve(listener, state.clone(), grpc::service));
        tracing::debug!(name, %addr, "gRPC test app up");
        Ok(TestApp {
            addr,
            name: name.to_owned(),
            state,
            task,
        })
    }

    /// How many requests (HTTP requests or gRPC calls) it has received.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Answer every HTTP request with `status` from now on (e.g. 503 to make this
    /// backend fail); 0 goes back to normal answers. No effect on gRPC.
    pub fn set_status(&self, status: u16) {
        self.state.forced_status.store(status, Ordering::Relaxed);
    }

    /// Fail `percent` % of requests, spread evenly: HTTP with `status`, gRPC
    /// with `grpc_code`. 0 stops failing.
    pub fn set_failures(&self, percent: f64, status: u16, grpc_code: tonic::Code) {
        let per_mille = (percent * 10.0).round().clamp(0.0, 1000.0) as u32;
        self.state.fail_status.store(status, Ordering::Relaxed);
        self.state
            .fail_grpc_code
            .store(grpc_code as u32, Ordering::Relaxed);
        self.state
            .fail_per_mille
            .store(per_mille, Ordering::Relaxed);
    }

    /// Wait `delay` before answering every request (HTTP and gRPC).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Reset every connection instead of answering (true), or answer (false).
    pub fn set_reset(&self, reset: bool) {
        self.state.reset.store(reset, Ordering::Relaxed);
    }

    /// Call `service` through `proxy` (its proxy's outbound listener) before
    /// answering each HTTP request, passing on the request id and trace context
    /// as an instrumented app does; the answer is 502 if that call fails.
    pub fn set_next(&self, proxy: SocketAddr, service: &str) {
        let next = http::Next::new(proxy, service);
        *self
            .state
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(next);
    }

    /// Close each connection after it has served `n` requests (0: never).
    pub fn set_close_after(&self, n: u64) {
        self.state.close_after.store(n, Ordering::Relaxed);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind with std (so the constructors need not be async) and hand to tokio.
fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    let std_listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("cannot bind {listen}"))?;
    std_listener
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;
    tokio::net::TcpListener::from_std(std_listener)
        .context("cannot register the listener with tokio (is a runtime running?)")
}

#[cfg(test)]
mod tests;
