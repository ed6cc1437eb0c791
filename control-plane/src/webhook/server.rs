//! HTTPS for the API server: TLS 1.3 with the webhook's certificate, then
//! HTTP/1.1 with one path, `POST /inject` taking `application/json`. A client
//! that does not start a TLS handshake is dropped; limits on connections,
//! handshake time, header time, body size and time, and idle time keep one
//! bad client from hurting the others.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::signal::stopped;

use super::body;
use super::review::{self, Outcome, Policy};
use super::{WebhookTls, PATH};

/// Open connections at most (the API server keeps a few alive); more are
/// closed at once.
const MAX_CONNECTIONS: usize = 128;
/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request and no byte for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long in-flight reviews may take to finish after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

type Body = Full<Bytes>;

/// Reviews answered, by outcome: in every log line, so the logs alone show
/// how the webhook has been doing.
#[derive(Debug, Default)]
struct Counts {
    injected: AtomicU64,
    unchanged: AtomicU64,
    refused: AtomicU64,
    bad: AtomicU64,
}

struct State {
    policy: Arc<Policy>,
    counts: Counts,
}

/// Serves until `shutdown` turns `true`.
pub(super) async fn serve(
    listener: TcpListener,
    tls: WebhookTls,
    policy: Arc<Policy>,
    mut shutdown: watch::Receiver<bool>,
) {
    let state = Arc::new(State {
        policy,
        counts: Counts::default(),
    });
    let acceptor = TlsAcceptor::from(tls.config());
    let graceful = GracefulShutdown::new();
    let slots = remora_net::Slots::new(MAX_CONNECTIONS);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = slots.take() else {
            if slots.refused().is_power_of_two() {
                tracing::warn!(%remote, limit = MAX_CONNECTIONS, refused = slots.refused(), "webhook connection refused: at the connection limit");
            }
            continue;
        };
        let (acceptor, state) = (acceptor.clone(), state.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            connection(stream, remote, acceptor, state, watcher).await;
        });
    }
    // Dropping the TLS config's owner stops its renewal; in-flight reviews
    // keep their own reference to the config.
    drop(tls);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook connections still open after {DRAIN:?}; closing them");
    }
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        // Plain HTTP, a wrong name on the client's side, a scanner: the
        // client learns from the closed connection.
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "webhook TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "webhook TLS handshake timed out");
            return;
        }
    };
    let activity = Arc::<remora_net::Activity>::default();
    let io = remora_net::IdleTimeout::new(tls, IDLE_TIMEOUT, activity.clone());
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let in_flight = activity.request();
        let state = state.clone();
        async move {
            let response = respond(&state, req).await;
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%remote, %error, "webhook connection error");
    }
}

async fn respond<B>(state: &State, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.uri().path() != PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found: the webhook serves POST /inject\n",
        );
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed\n");
    }
    if !body::is_json(req.headers()) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an AdmissionReview is sent as Content-Type: application/json\n",
        );
    }
    let (parts, incoming) = req.into_parts();
    let bytes = match body::read(&parts.headers, incoming).await {
        Ok(bytes) => bytes,
        Err(e) => {
            state.counts.bad.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "admission review refused");
            return text(e.status(), &format!("{e}\n"));
        }
    };
    let answer = match review::answer(&bytes, &state.policy) {
        Ok(answer) => answer,
        Err(e) => {
            let bad = state.counts.bad.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(error = %e, bad_total = bad, "admission review refused: not a review");
            return text(StatusCode::BAD_REQUEST, &format!("{e}\n"));
        }
    };
    log(state, &answer);
    match review::encode(&answer.review) {
        Ok(json) => {
            let mut response = Response::new(Full::new(Bytes::from(json)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot write the admission response");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot write the answer\n",
            )
        }
    }
}

fn log(state: &State, answer: &review::Answer) {
    let counts = &state.counts;
    let (ns, name) = (answer.namespace.as_str(), answer.name.as_str());
    match &answer.outcome {
        Outcome::Injected => {
            let n = counts.injected.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(
                namespace = ns,
                pod = name,
                injected_total = n,
                "pod injected"
            );
        }
        Outcome::Unchanged(skip) => {
            let n = counts.unchanged.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(
                namespace = ns,
                pod = name,
                reason = skip.as_str(),
                unchanged_total = n,
                "pod admitted unchanged"
            );
        }
        Outcome::Refused(message) => {
            let n = counts.refused.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(namespace = ns, pod = name, %message, refused_total = n, "pod refused: it cannot be injected");
        }
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
