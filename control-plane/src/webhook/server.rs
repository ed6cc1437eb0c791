//! HTTPS for the API server: TLS 1.3 with the webhook's certificate, then
//! HTTP/1.1 with one path, `POST /inject` taking `application/json`. A client
//! that does not start a TLS handshake is dropped; limits on connections (in
//! all and per client address), handshake time, header time, body size and
//! time, and idle time keep one bad client from hurting the others.
//!
//! A review (parse, inject, diff, encode) is CPU work on an object of up to
//! 2 MiB: it runs on tokio's blocking pool, at most [`REVIEWS_AT_ONCE`] at a
//! time, so neither the async runtime (the xDS server shares it) nor memory
//! grows with the number of clients.

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
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::ca::serving::HANDSHAKE_TIMEOUT;
use crate::signal::stopped;

use super::body;
use super::per_ip::PerIp;
use super::review::{self, BadReview, Outcome, Policy};
use super::{WebhookTls, PATH};

/// Open connections at most (the API server keeps a few alive); more are
/// closed at once.
const MAX_CONNECTIONS: usize = 128;
/// Open connections per client address at most: the API server opens one
/// HTTP/1.1 connection per review in flight, so this covers a burst of pod
/// creations from one API server, while one address can never take all of
/// [`MAX_CONNECTIONS`].
const MAX_CONNECTIONS_PER_IP: usize = 16;
/// Reviews computed at once, at most; each holds its object parsed and
/// injected in memory.
const REVIEWS_AT_ONCE: usize = 8;
/// How long a review waits for its turn before it is answered 503 (the API
/// server's own timeout for the webhook is 10 s by default).
const REVIEW_WAIT: Duration = Duration::from_secs(5);
/// How long a client gets to send a request's headers.
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
    /// [`REVIEWS_AT_ONCE`] permits.
    reviews: Arc<Semaphore>,
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
        reviews: Arc::new(Semaphore::new(REVIEWS_AT_ONCE)),
    });
    let acceptor = TlsAcceptor::from(tls.config());
    let graceful = GracefulShutdown::new();
    let slots = remora_net::Slots::new(MAX_CONNECTIONS);
    let per_ip = PerIp::new(MAX_CONNECTIONS_PER_IP);
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
        // A flood of refusals must not become a flood of log lines: the
        // 1st, 2nd, 4th, 8th... are logged, each with the count.
        let Some(ip_slot) = per_ip.take(remote.ip()) else {
            if per_ip.refused().is_power_of_two() {
                tracing::warn!(%remote, limit = per_ip.max(), refused = per_ip.refused(), "webhook connection refused: this address is at its connection limit");
            }
            continue;
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
            let _slots = (slot, ip_slot);
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
    let computed = match compute(state, bytes).await {
        Ok(computed) => computed,
        Err(response) => return response,
    };
    let (answer, encoded) = match computed {
        Ok(computed) => computed,
        Err(e) => {
            let bad = state.counts.bad.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(error = %e, bad_total = bad, "admission review refused: not a review");
            return text(StatusCode::BAD_REQUEST, &format!("{e}\n"));
        }
    };
    log(state, &answer);
    match encoded {
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

/// The review's answer and its encoding, computed on the blocking pool once
/// one of [`REVIEWS_AT_ONCE`] permits is free; a response instead when none
/// frees up within [`REVIEW_WAIT`] or the computation failed.
async fn compute(state: &State, bytes: Bytes) -> Result<Computed, Response<Body>> {
    let waited = tokio::time::timeout(REVIEW_WAIT, state.reviews.clone().acquire_owned()).await;
    let Ok(Ok(permit)) = waited else {
        tracing::warn!(
            limit = REVIEWS_AT_ONCE,
            "admission review refused: too many reviews in flight"
        );
        return Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many admission reviews in flight; try again\n",
        ));
    };
    let policy = state.policy.clone();
    // The permit moves into the work: a client that hangs up does not free
    // it before the work is done.
    let work = tokio::task::spawn_blocking(move || -> Computed {
        let _permit = permit;
        let answer = review::answer(&bytes, &policy)?;
        drop(bytes);
        let encoded = review::encode(&answer.review);
        Ok((answer, encoded))
    });
    work.await.map_err(|error| {
        tracing::error!(%error, "admission review failed");
        text(StatusCode::INTERNAL_SERVER_ERROR, "the review failed\n")
    })
}

/// What a review's work gives back: the answer and its JSON, or why the body
/// is no review.
type Computed = Result<(review::Answer, Result<Vec<u8>, serde_json::Error>), BadReview>;

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
