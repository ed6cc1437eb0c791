//! Endpoints live here across snapshots: a new snapshot asks for the endpoint at an
//! address and gets the same object (with its connection and latency estimate) for
//! as long as any snapshot still uses it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{Endpoint, Transport};

pub struct EndpointRegistry {
    endpoints: Mutex<HashMap<(SocketAddr, Transport), Weak<Endpoint>>>,
    http1: Client<HttpConnector, Incoming>,
}

impl Default for EndpointRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointRegistry {
    pub fn new() -> Self {
        Self {
            endpoints: Mutex::new(HashMap::new()),
            http1: http1_client(),
        }
    }

    /// The live endpoint for this address and transport, or a new one. Only called
    /// when config compiles, never per request.
    pub fn endpoint(&self, addr: SocketAddr, transport: Transport) -> Arc<Endpoint> {
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = map.get(&(addr, transport)).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let endpoint = Arc::new(Endpoint::with_http1_pool(
            addr,
            transport,
            self.http1.clone(),
        ));
        map.insert((addr, transport), Arc::downgrade(&endpoint));
        endpoint
    }
}

/// The HTTP/1.1 keep-alive pool used for plain endpoints and the local app.
pub(crate) fn http1_client() -> Client<HttpConnector, Incoming> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(super::DEFAULT_CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_address_gets_the_same_endpoint_while_in_use() {
        let registry = EndpointRegistry::new();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let a = registry.endpoint(addr, Transport::MeshH2);
        let b = registry.endpoint(addr, Transport::MeshH2);
        assert!(Arc::ptr_eq(&a, &b));
        let plain = registry.endpoint(addr, Transport::PlainH1);
        assert!(!Arc::ptr_eq(&a, &plain));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "unused endpoints are released");
    }
}
