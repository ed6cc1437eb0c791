//! A cluster's circuit breakers (Envoy's `circuit_breakers.thresholds`): the
//! limits a snapshot sets, and the counts they are checked against, which live
//! in the cluster's state and outlive config changes.
//!
//! - `max_requests`: requests in progress (admitted, until the response body
//!   ends, retries included).
//! - `max_connections`: an HTTP/1.1 server's request holds a connection for the
//!   whole exchange, so for those it bounds the requests in progress too. An
//!   HTTP/2 endpoint (a peer proxy, h2c, HTTP/2 over TLS) is reached over one
//!   shared connection, so a cluster with more of them than the limit balances
//!   over a subset of that many (chosen when config compiles, see
//!   `balance::subset`). An opaque TCP connection counts as one while carried.
//! - `max_pending_requests`: a request that finds no free place waits in line,
//!   at most this many, until a place frees or its deadline passes. Without it
//!   nothing waits.
//!
//! Over a limit a request gets 503 at once, saying which limit of which
//! Service; the cluster counts it by limit.
//!
//! The hot path is one compare-and-swap to take a place and one subtraction and
//! one load to give it back: no lock, no allocation. Only a request that waits
//! touches the `Notify` (a lock inside tokio) that wakes the line in order.

use std::sync::atomic::{
    AtomicU32,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;

use tokio::sync::Notify;

use super::{ClusterState, Protocol};

/// Which circuit-breaker limit refused a request or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxRequests,
    MaxConnections,
    MaxPendingRequests,
}

impl Limit {
    /// Its name in metrics and in the `remora-overloaded` header (Envoy's field).
    pub fn label(self) -> &'static str {
        match self {
            Limit::MaxRequests => "max_requests",
            Limit::MaxConnections => "max_connections",
            Limit::MaxPendingRequests => "max_pending_requests",
        }
    }

    /// Its name in a TrafficPolicy's `connectionLimits`, which users write.
    pub fn field(self) -> &'static str {
        match self {
            Limit::MaxRequests => "maxRequests",
            Limit::MaxConnections => "maxConnections",
            Limit::MaxPendingRequests => "maxPendingRequests",
        }
    }
}

/// Envoy's circuit-breaker thresholds (the default priority's); `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_requests: Option<u32>,
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
}

/// How many requests a cluster may have in progress, and which limit says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub limit: u32,
    pub by: Limit,
}

impl Limits {
    /// The requests a cluster may have in progress: `max_requests`, and for
    /// HTTP/1.1 servers outside the mesh `max_connections` too (each request
    /// holds a connection); the lower one, when both are set.
    pub fn concurrency(&self, protocol: Protocol, meshed: bool) -> Option<Concurrency> {
        let requests = self.max_requests.map(|limit| Concurrency {
            limit,
            by: Limit::MaxRequests,
        });
        let connections = self
            .max_connections
            .filter(|_| !meshed && protocol == Protocol::Http1)
            .map(|limit| Concurrency {
                limit,
                by: Limit::MaxConnections,
            });
        match (requests, connections) {
            (Some(r), Some(c)) => Some(if c.limit < r.limit { c } else { r }),
            (r, c) => r.or(c),
        }
    }

    /// The value of `limit`, if set.
    pub fn get(&self, limit: Limit) -> Option<u32> {
        match limit {
            Limit::MaxRequests => self.max_requests,
            Limit::MaxConnections => self.max_connections,
            Limit::MaxPendingRequests => self.max_pending_requests,
        }
    }
}

/// What the limits are checked against, in the cluster's long-lived state.
#[derive(Debug, Default)]
pub struct BreakerState {
    /// Requests in progress.
    active: AtomicU32,
    /// Requests in line for a place.
    waiting: AtomicU32,
    /// Opaque connections carried.
    connections: AtomicU32,
    /// Woken, one waiter at a time, when a place frees while some wait.
    freed: Notify,
}

impl BreakerState {
    /// Requests in progress now.
    pub fn active(&self) -> u32 {
        self.active.load(Relaxed)
    }

    /// Requests waiting for a place now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Relaxed)
    }

    /// Opaque connections carried now.
    pub fn connections(&self) -> u32 {
        self.connections.load(Relaxed)
    }

    /// Takes a place if one of `limit` is free. SeqCst pairs with the release
    /// in [`ActiveRequest`]'s drop: a waiter that counted itself in line and
    /// then found no place is always seen by the next release.
    fn take(&self, limit: Option<u32>) -> bool {
        match limit {
            None => {
                self.active.fetch_add(1, SeqCst);
                true
            }
            Some(limit) => self
                .active
                .fetch_update(SeqCst, SeqCst, |n| (n < limit).then_some(n + 1))
                .is_ok(),
        }
    }
}

/// A request's place among its cluster's requests in progress, given back on
/// drop (with the response body).
#[derive(Debug)]
pub struct ActiveRequest(Arc<ClusterState>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let b = &self.0.breaker;
        b.active.fetch_sub(1, SeqCst);
        if b.waiting.load(SeqCst) > 0 {
            b.freed.notify_one();
        }
    }
}

/// An opaque connection's place among its cluster's connections, given back on
/// drop (when the connection ends).
#[derive(Debug)]
pub struct OpenConnection(Arc<ClusterState>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.breaker.connections.fetch_sub(1, Relaxed);
    }
}

/// Counts a request in line until dropped (admitted, refused or cancelled).
struct InLine<'a>(&'a AtomicU32);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl ClusterState {
    /// A place among the requests in progress, if one of `concurrency` is free.
    pub fn admit(self: &Arc<Self>, concurrency: Option<Concurrency>) -> Option<ActiveRequest> {
        self.breaker
            .take(concurrency.map(|c| c.limit))
            .then(|| ActiveRequest(self.clone()))
    }

    /// Waits in line for one of `limit` places, as one of at most `max_waiting`
    /// requests in line (refused with [`Limit::MaxPendingRequests`] when the
    /// line is full). Waiters are woken in order; dropping the future leaves the
    /// line and passes a wake-up it had on to the next.
    pub async fn wait_for_place(
        self: &Arc<Self>,
        limit: u32,
        max_waiting: u32,
    ) -> Result<ActiveRequest, Limit> {
        let b = &self.breaker;
        b.waiting
            .fetch_update(SeqCst, SeqCst, |n| (n < max_waiting).then_some(n + 1))
            .map_err(|_| Limit::MaxPendingRequests)?;
        let _in_line = InLine(&b.waiting);
        loop {
            let freed = b.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a place freed in between wakes us.
            freed.as_mut().enable();
            if b.take(Some(limit)) {
                return Ok(ActiveRequest(self.clone()));
            }
            freed.await;
        }
    }

    /// A place among the opaque connections, if one of `limit` is free.
    pub fn open_connection(self: &Arc<Self>, limit: u32) -> Option<OpenConnection> {
        self.breaker
            .connections
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| OpenConnection(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TWO: Option<Concurrency> = Some(Concurrency {
        limit: 2,
        by: Limit::MaxRequests,
    });

    #[test]
    fn http1_servers_are_bounded_by_the_lower_of_requests_and_connections() {
        let limits = Limits {
            max_requests: Some(10),
            max_connections: Some(4),
            max_pending_requests: Some(3),
        };
        let by = |protocol, meshed| limits.concurrency(protocol, meshed);
        assert_eq!(
            by(Protocol::Http1, false),
            Some(Concurrency {
                limit: 4,
                by: Limit::MaxConnections
            })
        );
        // Over HTTP/2 requests share a connection: only max_requests counts.
        for (protocol, meshed) in [(Protocol::Http2, false), (Protocol::Http1, true)] {
            assert_eq!(
                by(protocol, meshed),
                Some(Concurrency {
                    limit: 10,
                    by: Limit::MaxRequests
                })
            );
        }
        let connections_only = Limits {
            max_connections: Some(4),
            ..Limits::default()
        };
        assert_eq!(connections_only.concurrency(Protocol::Http2, false), None);
        assert_eq!(Limits::default().concurrency(Protocol::Http1, false), None);
    }

    #[tokio::test]
    async fn places_are_taken_and_given_back() {
        let state = Arc::new(ClusterState::default());
        let a = state.admit(TWO).unwrap();
        let _b = state.admit(TWO).unwrap();
        assert!(state.admit(TWO).is_none(), "both places are taken");
        assert_eq!(state.breaker.active(), 2, "a refusal takes nothing");
        drop(a);
        assert!(state.admit(TWO).is_some());
        assert!(state.admit(None).is_some(), "no limit, always a place");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_get_freed_places_in_order_and_the_line_is_bounded() {
        let state = Arc::new(ClusterState::default());
        let one = Some(Concurrency {
            limit: 1,
            by: Limit::MaxRequests,
        });
        let first = state.admit(one).unwrap();
        let (s1, s2) = (state.clone(), state.clone());
        let w1 = tokio::spawn(async move { s1.wait_for_place(1, 2).await.map(|_| 1) });
        tokio::task::yield_now().await;
        let w2 = tokio::spawn(async move { s2.wait_for_place(1, 2).await.map(|_| 2) });
        tokio::task::yield_now().await;
        assert_eq!(state.breaker.waiting(), 2);
        // The line is full.
        assert_eq!(
            state.wait_for_place(1, 2).await.unwrap_err(),
            Limit::MaxPendingRequests
        );
        drop(first);
        assert_eq!(w1.await.unwrap(), Ok(1), "the first in line goes first");
        // w1's place was dropped with its task: w2 gets it.
        assert_eq!(w2.await.unwrap(), Ok(2));
        assert_eq!(state.breaker.waiting(), 0);
        assert_eq!(state.breaker.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_the_line_and_passes_its_turn_on() {
        let state = Arc::new(ClusterState::default());
        let one = Some(Concurrency {
            limit: 1,
            by: Limit::MaxRequests,
        });
        let first = state.admit(one).unwrap();
        let impatient = tokio::time::timeout(Duration::from_millis(10), state.wait_for_place(1, 5));
        assert!(impatient.await.is_err());
        assert_eq!(state.breaker.waiting(), 0, "it left the line");
        let s = state.clone();
        let patient = tokio::spawn(async move { s.wait_for_place(1, 5).await.is_ok() });
        tokio::task::yield_now().await;
        drop(first);
        assert!(patient.await.unwrap());
    }

    #[tokio::test]
    async fn opaque_connections_are_bounded() {
        let state = Arc::new(ClusterState::default());
        let a = state.open_connection(1).unwrap();
        assert!(state.open_connection(1).is_none());
        drop(a);
        assert!(state.open_connection(1).is_some());
        assert_eq!(state.breaker.connections(), 0);
    }
}
