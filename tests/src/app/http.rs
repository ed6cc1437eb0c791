//! The HTTP test app's behaviour.
//!
//! Every request gets `200` with body `"<name>\n"` (a `POST` gets its own body
//! back instead) and these headers:
//!
//! - `x-backend: <name>`;
//! - `x-seen-host`: the `Host` header it received, else the URI authority (h2);
//! - `x-seen-version`: the HTTP version it received (`HTTP/1.1`, `HTTP/2.0`);
//! - `x-seen-client-id`: the `remora-client-id` header it received (the caller's
//!   identity, as the inbound proxy vouches for it), if any;
//! - `x-seen-grpc-timeout`: the `grpc-timeout` header it received, if any;
//! - `x-seen-request-id`: the `x-request-id` header it received, if any;
//! - `x-seen-traceparent`: the `traceparent` header it received, if any;
//! - `x-next-status`: the status of its call to the next service, if it makes one
//!   ([`super::TestApp::set_next`]);
//! - `x-echo-<name>: <value>` for every request header `x-test-<name>` (all
//!   values, in order).
//!
//! Request headers that change the answer, for tests of retries and timeouts:
//!
//! - `x-app-status: N` answers status N;
//! - `x-app-delay-ms: N` waits N ms before answering.
//!
//! [`super::TestApp::set_status`] makes every request fail the same way;
//! `set_failures`, `set_delay`, `set_reset` and `set_close_after` make it
//! misbehave in the other ways a real backend does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;

use super::server::ConnectionState;
use super::AppState;

pub const BACKEND_HEADER: &str = "x-backend";
pub const SEEN_HOST_HEADER: &str = "x-seen-host";
pub const SEEN_VERSION_HEADER: &str = "x-seen-version";
pub const SEEN_CLIENT_ID_HEADER: &str = "x-seen-client-id";
pub const SEEN_GRPC_TIMEOUT_HEADER: &str = "x-seen-grpc-timeout";
pub const STATUS_REQUEST_HEADER: &str = "x-app-status";
pub const DELAY_REQUEST_HEADER: &str = "x-app-delay-ms";

/// The hyper service answering as described in the module docs.
pub(crate) fn service(
    state: Arc<AppState>,
    connection: Arc<ConnectionState>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Reset,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    service_fn(move |request| answer(state.clone(), connection.clone(), request))
}

/// Returned instead of an answer: hyper drops the connection (HTTP/1) or resets
/// the stream (HTTP/2).
#[derive(Debug)]
pub struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("test app reset the connection")
    }
}

impl std::error::Error for Reset {}

async fn answer(
    state: Arc<AppState>,
    connection: Arc<ConnectionState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Reset> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    connection.count(&state);
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if state.reset.load(Ordering::Relaxed) {
        return Err(Reset);
    }
    if state.fails() {
        let status = StatusCode::from_u16(state.fail_status.load(Ordering::Relaxed))
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Ok(plain(status, format!("{} failed on purpose\n", state.name)));
    }
    let seen_host = request.headers().get(HOST).cloned().or_else(|| {
        let authority = request.uri().authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    let seen_version = format!("{:?}", request.version());
    let seen_client_id = request.headers().get("remora-client-id").cloned();
    let seen_grpc_timeout = request.headers().get("grpc-timeout").cloned();
    let seen_request_id = request.headers().get("x-request-id").cloned();
    let seen_traceparent = request.headers().get("traceparent").cloned();
    let next = state
        .next
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let next_status = match next {
        Some(next) => match next.call(request.headers()).await {
            Ok(status) => Some(status),
            Err(e) => {
                tracing::debug!(error = %e, "test app could not call the next service");
                return Ok(plain(StatusCode::BAD_GATEWAY, format!("next: {e}\n")));
            }
        },
        None => None,
    };
    let echoed: Vec<(http::HeaderName, HeaderValue)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            let rest = name.as_str().strip_prefix("x-test-")?;
            let echo = http::HeaderName::from_bytes(format!("x-echo-{rest}").as_bytes()).ok()?;
            Some((echo, value.clone()))
        })
        .collect();
    if let Some(ms) = number_header(&request, DELAY_REQUEST_HEADER) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = match number_header(&request, STATUS_REQUEST_HEADER) {
        Some(code) => code,
        None => u64::from(state.forced_status.load(Ordering::Relaxed)),
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = if request.method() == Method::POST {
        match request.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                tracing::debug!(error = %e, "test app could not read a request body");
                return Ok(plain(StatusCode::BAD_REQUEST, format!("bad body: {e}\n")));
            }
        }
    } else {
        Bytes::from(format!("{}\n", state.name))
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(name) = HeaderValue::from_str(&state.name) {
        headers.insert(BACKEND_HEADER, name);
    }
    if let Some(host) = seen_host {
        headers.insert(SEEN_HOST_HEADER, host);
    }
    if let Ok(version) = HeaderValue::from_str(&seen_version) {
        headers.insert(SEEN_VERSION_HEADER, version);
    }
    if let Some(id) = seen_client_id {
        headers.insert(SEEN_CLIENT_ID_HEADER, id);
    }
    if let Some(t) = seen_grpc_timeout {
        headers.insert(SEEN_GRPC_TIMEOUT_HEADER, t);
    }
    if let Some(id) = seen_request_id {
        headers.insert("x-seen-request-id", id);
    }
    if let Some(tp) = seen_traceparent {
        headers.insert("x-seen-traceparent", tp);
    }
    if let Some(status) = next_status {
        headers.insert("x-next-status", HeaderValue::from(status.as_u16()));
    }
    for (name, value) in echoed {
        headers.append(name, value);
    }
    Ok(response)
}

fn number_header(request: &Request<Incoming>, name: &str) -> Option<u64> {
    request
        .headers()
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

/// Headers an instrumented app passes on to the services it calls.
const PROPAGATED: [&str; 8] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
];

/// A service the app calls, through its proxy.
#[derive(Clone)]
pub(crate) struct Next {
    proxy: std::net::SocketAddr,
    service: HeaderValue,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<Bytes>,
    >,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("proxy", &self.proxy)
            .field("service", &self.service)
            .finish()
    }
}

impl Next {
    pub(crate) fn new(proxy: std::net::SocketAddr, service: &str) -> Self {
        Self {
            proxy,
            service: HeaderValue::from_str(service).unwrap_or(HeaderValue::from_static("invalid")),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }

    async fn call(&self, incoming: &http::HeaderMap) -> Result<StatusCode, String> {
        let mut request = Request::new(http_body_util::Empty::new());
        *request.uri_mut() = format!("http://{}/", self.proxy)
            .parse()
            .map_err(|e| format!("{e}"))?;
        request.headers_mut().insert(HOST, self.service.clone());
        for name in PROPAGATED {
            if let Some(v) = incoming.get(name) {
                request.headers_mut().insert(name, v.clone());
            }
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e}"))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e}"))?;
        Ok(status)
    }
}
