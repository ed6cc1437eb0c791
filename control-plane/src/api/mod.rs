//! The HTTP API (hyper, HTTP/1.1): `GET /api/v1/proxies`, `GET /api/v1/config`,
//! `GET /api/v1/stat`, `GET /live`, and the dashboard at `/`. Read-only views of the registry and the config in force.

mod routes;
mod time;
mod views;

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
}

/// Serves the API on `listener` until `shutdown` turns `true`.
pub async fn serve(listener: TcpListener, state: ApiState, mut shutdown: watch::Receiver<bool>) {
    let state = Arc::new(state);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        let service = service_fn(move |req| {
            let response = routes::handle(&state, &req);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
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
