//! The inbound side's clients to the local app, one per app address: the
//! bootstrap's `app`, and each other port a request was sent to (a Service
//! port's target). Each address has its own HTTP/1 pool and HTTP/2
//! connection, so two ports never share a connection.
//!
//! Made on first use and kept, read without a lock: the addresses come from
//! the config's HTTP target ports, a handful, and the clients outlive config
//! changes like the outbound endpoints do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::uri::{Authority, InvalidUri};

use crate::upstream::{Endpoint, Transport};

/// One app address, as the inbound side reaches it.
pub struct AppClient {
    pub h1: Endpoint,
    pub h2: Endpoint,
    /// The address as an authority: HTTP/1 request URIs carry it.
    pub authority: Authority,
}

impl AppClient {
    fn new(addr: SocketAddr) -> Result<Self, InvalidUri> {
        Ok(Self {
            h1: Endpoint::new(addr, Transport::PlainH1),
            h2: Endpoint::new(addr, Transport::PlainH2),
            authority: Authority::try_from(addr.to_string())?,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.h1.addr()
    }
}

/// How many other addresses keep their clients. A Service has a few HTTP
/// ports; past this (config after config naming new ports), a request gets a
/// client of its own rather than the set growing.
const MAX_KEPT: usize = 64;

pub struct AppClients {
    app: AppClient,
    others: ArcSwap<HashMap<SocketAddr, Arc<AppClient>>>,
}

impl AppClients {
    /// The clients, starting with the bootstrap's `app`.
    pub fn new(app: SocketAddr) -> Result<Self, InvalidUri> {
        Ok(Self {
            app: AppClient::new(app)?,
            others: ArcSwap::default(),
        })
    }

    /// The client of `addr`, made on first use. The bootstrap's `app` (nearly
    /// every request) is borrowed: no reference count is touched per request.
    pub fn get(&self, addr: SocketAddr) -> Result<ClientRef<'_>, InvalidUri> {
        if addr == self.app.addr() {
            return Ok(ClientRef::App(&self.app));
        }
        let kept = self.others.load();
        if let Some(client) = kept.get(&addr) {
            return Ok(ClientRef::Other(client.clone()));
        }
        let made = Arc::new(AppClient::new(addr)?);
        if kept.len() >= MAX_KEPT {
            return Ok(ClientRef::Other(made));
        }
        drop(kept);
        // Two requests racing for a new address keep one client.
        self.others.rcu(|others| {
            let mut others: HashMap<_, _> = (**others).clone();
            others.entry(addr).or_insert_with(|| made.clone());
            others
        });
        Ok(ClientRef::Other(
            self.others.load().get(&addr).cloned().unwrap_or(made),
        ))
    }
}

/// A client as [`AppClients::get`] hands it out.
pub enum ClientRef<'a> {
    App(&'a AppClient),
    Other(Arc<AppClient>),
}

impl std::ops::Deref for ClientRef<'_> {
    type Target = AppClient;

    fn deref(&self) -> &AppClient {
        match self {
            ClientRef::App(client) => client,
            ClientRef::Other(client) => client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_address_has_one_client_kept_and_app_is_its_own() {
        let app: SocketAddr = ([127, 0, 0, 1], 3000).into();
        let clients = AppClients::new(app).unwrap();
        let first = clients.get(app).unwrap();
        assert!(std::ptr::eq(&*first, &*clients.get(app).unwrap()));
        assert!(matches!(first, ClientRef::App(_)), "app is borrowed");
        let other: SocketAddr = ([127, 0, 0, 1], 8080).into();
        let made = clients.get(other).unwrap();
        assert_eq!(made.addr(), other);
        assert_eq!(made.authority.as_str(), "127.0.0.1:8080");
        assert!(
            std::ptr::eq(&*made, &*clients.get(other).unwrap()),
            "kept for the next request"
        );
        assert!(!std::ptr::eq(&*made, &*first), "not app's pool");
    }

    #[tokio::test]
    async fn past_the_cap_a_new_address_gets_a_client_of_its_own() {
        let clients = AppClients::new(([127, 0, 0, 1], 3000).into()).unwrap();
        for port in 0..MAX_KEPT as u16 {
            clients.get(([127, 0, 0, 1], 10_000 + port).into()).unwrap();
        }
        let past: SocketAddr = ([127, 0, 0, 1], 20_000).into();
        let once = clients.get(past).unwrap();
        assert!(!std::ptr::eq(&*once, &*clients.get(past).unwrap()));
        assert_eq!(
            clients.others.load().len(),
            MAX_KEPT,
            "the set stops growing"
        );
    }
}
