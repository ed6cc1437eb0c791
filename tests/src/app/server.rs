//! The accept loop shared by the test apps: HTTP/1.1 and h2c on one port, every
//! connection a task owned by the loop so that stopping the loop cuts them all.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::AppState;

type BoxError = Box<dyn StdError + Send + Sync>;

/// What one connection of a test app counts.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    pub(crate) requests: AtomicU64,
    /// Notified when the connection should close after its current requests.
    pub(crate) close: Notify,
}

impl ConnectionState {
    /// Counts a request; asks the connection to close once it has served
    /// `close_after` (if set).
    pub(crate) fn count(&self, app: &AppState) {
        let served = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = app.close_after.load(Ordering::Relaxed);
        if limit > 0 && served >= limit {
            self.close.notify_one();
        }
    }
}

/// Serve on every connection accepted from `listener` with the service `make`
/// builds for it, until the task running this is aborted (which drops, and so
/// aborts, every connection task). Each connection gets its own request count, so
/// `close_after` applies per connection.
pub(crate) async fn serve<M, S, B>(listener: TcpListener, state: Arc<AppState>, make: M)
where
    M: Fn(Arc<AppState>, Arc<ConnectionState>) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    stream.set_nodelay(true).ok();
                    let connection = Arc::new(ConnectionState::default());
                    let service = make(state.clone(), connection.clone());
                    connections.spawn(async move {
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let serving = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::pin!(serving);
                        // Closing after N requests: finish the Nth, then shut down.
                        let result = tokio::select! {
                            r = serving.as_mut() => r,
                            () = connection.close.notified() => {
                                serving.as_mut().graceful_shutdown();
                                serving.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "test app connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "test app accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
