//! Who may ask the admin port what.
//!
//! In a pod the admin listens on the pod's IP, since the kubelet probes it
//! from the node; so does every other pod in the cluster. Callers off
//! loopback get only what probes and scrapers need (`GET /ready`, `/live`,
//! `/metrics`, `/app-health/...`): `/config_dump` lists endpoints, routes and
//! policy names, and `/shutdown` and `/logging` change the proxy. Each such
//! address may hold a few connections only, and gets a short time to send
//! its request, so one noisy pod cannot take the slots the kubelet's probes
//! need.
//!
//! "Local" is decided by the connection's peer address, never by a header:
//! `127.0.0.1` or `::1` (or `127.0.0.1` mapped into IPv6, as a dual-stack
//! `[::]` listener sees it). Only those two, not all of 127/8: whatever runs
//! in the pod reaches the admin port at 127.0.0.1, nothing from outside
//! can send from 127/8, and tests can then play a remote caller from
//! another loopback address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Method;

use super::Admin;
use crate::accept::{Accepted, Connections};
use crate::bootstrap::probes::APP_HEALTH_PREFIX;
use crate::http::{ConnectionInfo, HttpServer, ListenerLimits};

/// Connections one address off loopback may hold at once. The kubelet opens
/// one per probe and closes it after the answer; a pod's probes (the
/// proxy's, and the app's that the proxy runs) seldom overlap by more than a
/// few, and Prometheus keeps one.
pub const MAX_CONNECTIONS_PER_REMOTE_IP: usize = 8;
/// How long a caller off loopback gets to send a request's headers (HTTP/1).
pub const REMOTE_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection from off loopback may sit idle between requests.
const REMOTE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A caller on this machine (see the module doc); an unknown peer is not.
pub(super) fn is_local_peer(peer: Option<SocketAddr>) -> bool {
    match peer.map(|p| p.ip()) {
        Some(IpAddr::V4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(IpAddr::V6(ip)) => {
            ip == Ipv6Addr::LOCALHOST || ip.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST)
        }
        None => false,
    }
}

/// What a caller off loopback may ask: the probes and the metrics.
pub(super) fn allowed_remotely(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (matches!(path, "/ready" | "/live" | "/metrics") || path.starts_with(APP_HEALTH_PREFIX))
}

/// The admin listener's connections: loopback callers as before; others
/// capped per address, with short header-read and idle timeouts.
pub struct AdminConnections {
    local: HttpServer<Admin>,
    remote: HttpServer<Admin>,
    per_ip: PerIp,
}

impl AdminConnections {
    pub fn new(admin: Admin, limits: ListenerLimits) -> Self {
        let admin = Arc::new(admin);
        let remote_limits = ListenerLimits {
            idle_timeout: limits.idle_timeout.min(REMOTE_IDLE_TIMEOUT),
            ..limits
        };
        Self {
            local: HttpServer::new(admin.clone(), limits),
            remote: HttpServer::new(admin, remote_limits)
                .with_header_read_timeout(REMOTE_HEADER_READ_TIMEOUT),
            per_ip: PerIp::new(MAX_CONNECTIONS_PER_REMOTE_IP),
        }
    }
}

impl Connections for AdminConnections {
    async fn serve(self: Arc<Self>, a: Accepted) {
        let info = ConnectionInfo::default();
        if is_local_peer(Some(a.peer)) {
            return self
                .local
                .serve_connection(a.stream, a.peer, info, a.watcher)
                .await;
        }
        let Some(_slot) = self.per_ip.take(a.peer.ip()) else {
            // Closed at once, as the listener does over its own cap.
            tracing::debug!(
                peer = %a.peer,
                limit = MAX_CONNECTIONS_PER_REMOTE_IP,
                "admin connection refused: too many from this address"
            );
            return;
        };
        self.remote
            .serve_connection(a.stream, a.peer, info, a.watcher)
            .await
    }
}

/// Open connections by peer address; an address with none has no entry, so
/// the map is never larger than the listener's connection cap.
struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection of `ip`, given back when dropped.
struct PerIpSlot<'a> {
    owner: &'a PerIp,
    ip: IpAddr,
}

impl PerIp {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::default(),
        }
    }

    /// A slot for one more connection from `ip`; `None` at the cap.
    fn take(&self, ip: IpAddr) -> Option<PerIpSlot<'_>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.get(&ip).copied().unwrap_or(0);
        if n >= self.max {
            return None;
        }
        open.insert(ip, n + 1);
        Some(PerIpSlot { owner: self, ip })
    }

    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PerIpSlot<'_> {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_127_0_0_1_and_its_ipv6_forms_are_local() {
        let peer = |a: &str| Some(a.parse().unwrap());
        assert!(is_local_peer(peer("127.0.0.1:50000")));
        assert!(is_local_peer(peer("[::1]:50000")));
        assert!(
            is_local_peer(peer("[::ffff:127.0.0.1]:50000")),
            "a dual-stack [::] listener"
        );
        // The kubelet, another pod, or another container calling the pod's IP.
        assert!(!is_local_peer(peer("10.1.2.3:50000")));
        assert!(!is_local_peer(peer("[fd00::3]:50000")));
        assert!(!is_local_peer(peer("[::ffff:10.1.2.3]:50000")));
        // The rest of 127/8: what tests use to play a remote caller.
        assert!(!is_local_peer(peer("127.0.0.3:50000")));
        assert!(!is_local_peer(None), "no peer address: refused");
    }

    #[test]
    fn callers_off_loopback_get_the_probes_and_the_metrics_only() {
        for path in ["/ready", "/live", "/metrics", "/app-health/app/livez"] {
            assert!(allowed_remotely(&Method::GET, path), "{path}");
        }
        for path in ["/", "/config_dump", "/app-health", "/readyz", "/metrics/x"] {
            assert!(!allowed_remotely(&Method::GET, path), "{path}");
        }
        for (method, path) in [
            (Method::POST, "/shutdown"),
            (Method::POST, "/logging"),
            (Method::POST, "/ready"),
            (Method::HEAD, "/live"),
        ] {
            assert!(!allowed_remotely(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn each_address_holds_a_few_connections_and_gets_them_back() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = per_ip.take(a).unwrap();
        let second = per_ip.take(a).unwrap();
        assert!(per_ip.take(a).is_none(), "a third from the same address");
        let other = per_ip.take(b);
        assert!(other.is_some(), "another address has its own");
        drop(first);
        assert_eq!(per_ip.open(a), 1);
        let third = per_ip.take(a);
        assert!(third.is_some());
        drop((second, third, other));
        assert_eq!(per_ip.open(a), 0);
        assert!(per_ip.open.lock().unwrap().is_empty(), "no entry left");
    }
}
