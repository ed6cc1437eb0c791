//! The HTTP API (hyper, HTTP/1.1). Reads: `GET /api/v1/proxies`,
//! `/api/v1/status` (every proxy and whether it holds the config in force),
//! `/api/v1/config`, `/api/v1/resources`, `/api/v1/endpoints`, `/api/v1/stat`,
//! `/api/v1/refusals`, `/live`, and the dashboard at `/`. Writes (always with an
//! admin token): `POST /api/v1/apply` and `POST /api/v1/delete`, made by the
//! control plane's config task through its source.

pub mod auth;
pub(crate) mod body; // request bodies: size cap and timeout (the webhook reads its reviews with it)
pub mod kinds; // kind names and aliases (`svc`, `httproutes`, ...)
pub mod query; // percent-encoding of query values
mod resources; // /api/v1/resources and /api/v1/endpoints
mod routes;
mod status; //    /api/v1/status
mod time;
mod views;
pub mod writes; // /api/v1/apply and /api/v1/delete, and the channel to the config task

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::signal::stopped;
use crate::xds::{Registry, Snapshot};

pub use body::MAX_BODY_BYTES;
pub use views::{ConfigView, NackView, ProxyView, TypeView};

/// How long in-flight requests may take to finish after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// What the API reads.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub snapshots: watch::Receiver<Snapshot>,
    /// The CA's roots (PEM), for proxies' bootstrap files.
    pub trust_bundle: Bytes,
    /// What proxies report about their traffic.
    pub traffic: Arc<crate::traffic::TrafficStore>,
    /// Who may read it (and write: admin tokens only).
    pub access: auth::Access,
    /// Where writes go.
    pub writes: writes::Writes,
    /// The certificates issued, for each proxy's expiry in `/api/v1/status`.
    pub certificates: Arc<crate::identity::IssuedCertificates>,
}

/// Open API connections at most; more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// An API connection with no request and no byte for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client gets this long to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until `shutdown` turns `true`.
pub async fn serve(listener: TcpListener, state: ApiState, mut shutdown: watch::Receiver<bool>) {
    let state = Arc::new(state);
    let graceful = GracefulShutdown::new();
    let slots = remora_net::Slots::new(MAX_CONNECTIONS);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
        };
        let stream = match accepted {
            Ok((stream, peer)) => match slots.take() {
                Some(slot) => (stream, slot),
                None => {
                    // A flood of refusals must not become a flood of log lines: the
                    // 1st, 2nd, 4th, 8th... are logged, each with the count.
                    if slots.refused().is_power_of_two() {
                        tracing::warn!(%peer, limit = MAX_CONNECTIONS, refused = slots.refused(), "API connection refused: at the connection limit");
                    }
                    continue;
                }
            },
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (stream, slot) = stream;
        let state = Arc::clone(&state);
        let activity = Arc::<remora_net::Activity>::default();
        let io = remora_net::IdleTimeout::new(stream, IDLE_TIMEOUT, activity.clone());
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let in_flight = activity.request();
            let state = Arc::clone(&state);
            async move {
                let response = routes::respond(&state, req).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "API connection error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API connections still open after {DRAIN:?}; closing them");
    }
}
