//! Inbound: a request from another proxy (or a plain client) -> the local app, in the
//! protocol the calling app used, at the app port its Service port maps to
//! (see [`super::target_port`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;

use http::uri::Authority;
use http::{header, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::app_clients::AppClients;
use super::body::Tracked;
use super::headers::{parse_version, retarget, set_host, strip_hop_by_hop};
use super::reply::{explained, forbidden, local, rate_limited, upstream_failure};
use super::server::{Handler, InboundStats, OriginalDestination, PeerIdentity, Plaintext};
use super::target_port::{self, AppAddresses, Caller, OwnListeners};
use super::{grpc_status, is_grpc, ResponseBody, CLIENT_ID, ORIG_PROTO, TARGET_PORT};
use crate::authz;
use crate::snapshot::{InboundPolicy, Snapshot};
use crate::telemetry::Metrics;
use crate::upstream::RequestBody;
use tokio::time::Instant;

pub struct Inbound {
    /// A client per app address (`app`, and the target ports asked for).
    apps: AppClients,
    addresses: AppAddresses,
    snapshot: Arc<ArcSwap<Snapshot>>,
    stats: Arc<InboundStats>,
    metrics: Arc<Metrics>,
    limits: crate::limits::Limits,
}

impl Inbound {
    pub fn new(
        app: SocketAddr,
        snapshot: Arc<ArcSwap<Snapshot>>,
        stats: Arc<InboundStats>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, http::uri::InvalidUri> {
        Ok(Self {
            apps: AppClients::new(app)?,
            addresses: AppAddresses {
                app,
                app_ports: BTreeMap::new(),
                own: OwnListeners::default(),
            },
            snapshot,
            stats,
            metrics,
            limits: crate::limits::Limits::default(),
        })
    }

    /// The request limits enforced before anything else (see [`super::limits`]).
    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where the app serves ports other than at its IP (the bootstrap's
    /// `app_ports`), for requests to a Service port's target.
    pub fn with_app_ports(mut self, app_ports: BTreeMap<u16, SocketAddr>) -> Self {
        self.addresses.app_ports = app_ports;
        self
    }

    /// The proxy's own listeners, never forwarded to (see [`OwnListeners`]).
    pub fn with_own_listeners(mut self, own: OwnListeners) -> Self {
        self.addresses.own = own;
        self
    }

    /// The inbound policy's verdict on a request. A proxy without an identity
    /// serves plaintext only and applies the mTLS chain's rules to
    /// unauthenticated callers.
    fn authorize(policy: Option<&InboundPolicy>, req: &Request<Incoming>) -> Result<(), String> {
        let Some(policy) = policy else {
            return Ok(());
        };
        let peer = req.extensions().get::<PeerIdentity>();
        let rules = if req.extensions().get::<Plaintext>().is_some() {
            // Accepted while PERMISSIVE; the mode may have changed since.
            policy.plaintext.as_ref().ok_or_else(|| {
                "plaintext is no longer accepted: this service requires mTLS (STRICT)".to_owned()
            })?
        } else {
            &policy.mtls
        };
        if rules.is_empty() {
            return Ok(());
        }
        let request = authz::Request {
            peer: peer.map(|p| &*p.id),
            method: req.method(),
            path: req.uri().path(),
            headers: req.headers(),
        };
        rules.check(&request).map_err(|denied| {
            let reason = denied.reason();
            tracing::info!(
                peer_identity = peer.map_or("none", |p| &*p.id),
                method = %req.method(),
                path = req.uri().path(),
                %reason,
                "request denied"
            );
            reason
        })
    }

    /// Sends `req` to the app at `app`.
    async fn forward(&self, req: Request<Incoming>, app: SocketAddr) -> Response<ResponseBody> {
        let Ok(client) = self.apps.get(app) else {
            return local(StatusCode::BAD_GATEWAY, "invalid app address");
        };
        let (mut parts, body) = req.into_parts();
        let downstream_version = parts.version;
        let app_version = parts
            .headers
            .remove(ORIG_PROTO)
            .and_then(|v| parse_version(v.as_bytes()))
            .unwrap_or(downstream_version);
        strip_hop_by_hop(&mut parts.headers);
        // Only what this proxy verified may claim to be the caller's identity.
        parts.headers.remove(CLIENT_ID);
        if let Some(header) = parts
            .extensions
            .get::<PeerIdentity>()
            .and_then(|p| p.header.clone())
        {
            parts.headers.insert(CLIENT_ID, header);
        }
        let authority = parts.uri.authority().cloned().or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        });
        let (endpoint, uri_authority) = if app_version == Version::HTTP_2 {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            (
                &client.h2,
                authority.unwrap_or_else(|| client.authority.clone()),
            )
        } else {
            parts.version = Version::HTTP_11;
            // HTTP/2 callers carry the authority only in the URI; HTTP/1 keep Host.
            if let (Some(a), false) = (&authority, parts.headers.contains_key(header::HOST)) {
                set_host(&mut parts.headers, a);
            }
            (&client.h1, client.authority.clone())
        };
        if retarget(&mut parts, uri_authority).is_err() {
            return local(StatusCode::BAD_REQUEST, "invalid request target");
        }
        let sent_at = Instant::now();
        let sent = endpoint
            .send(Request::from_parts(parts, RequestBody::Streaming(body)))
            .await;
        crate::telemetry::add_upstream_time(sent_at.elapsed());
        match sent {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.version = downstream_version;
                Response::from_parts(parts, Either::Left(Tracked::new(body, None)))
            }
            Err(error) => upstream_failure(&error),
        }
    }
}

impl Handler for Inbound {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        // A caller outside the mesh (PERMISSIVE plaintext) may not have one yet.
        let arrival = crate::telemetry::arrive(&self.metrics, &mut req);
        let peer = req.extensions().get::<PeerIdentity>().cloned();
        let (mut response, learned) = crate::telemetry::observe(self.admit_and_forward(req)).await;
        let app_time = learned.upstream;
        let elapsed = started.elapsed();
        let hop = crate::telemetry::Hop {
            direction: "inbound",
            route: "",
            backend: "app",
            peer_identity: peer.as_ref().map_or("", |p| &*p.id),
        };
        arrival.finish(&self.metrics, &mut response, hop, elapsed, &learned);
        if self.metrics.off {
            return response;
        }
        // Resolved once per connection (or once for every unauthenticated caller).
        let hop = match &peer {
            Some(p) => p
                .hop
                .get_or_init(|| self.metrics.inbound_caller(Some(&p.id)))
                .clone(),
            None => self.metrics.inbound_caller(None),
        };
        hop.responses
            .count(response.status().as_u16(), grpc_status(response.headers()));
        hop.duration.observe(elapsed);
        hop.overhead.observe(elapsed.saturating_sub(app_time));
        response
    }
}

impl Inbound {
    async fn admit_and_forward(&self, mut req: Request<Incoming>) -> Response<ResponseBody> {
        let app = match self.admit(&mut req) {
            Ok(app) => app,
            Err(refused) => return *refused,
        };
        if super::upgrade::is_extended_connect(&req) {
            return super::upgrade::inbound(app, req).await;
        }
        self.forward(req, app).await
    }

    /// The app address a request goes to, or the inbound policy's refusal
    /// (authorization, the app port it asks for, then the rate limit); the
    /// snapshot is loaded once and not held across the forwarding. A refusal
    /// is boxed: the common answer, an address, stays small.
    fn admit(&self, req: &mut Request<Incoming>) -> Result<SocketAddr, Refusal> {
        if let Some(refused) = super::limits::refuse(&*req, &self.limits) {
            return Err(Box::new(refused));
        }
        // Out before authorization, so no policy or route matches on what
        // routing itself reads apart.
        let target = req.headers_mut().remove(TARGET_PORT);
        let snapshot = self.snapshot.load();
        let policy = snapshot.inbound.as_ref();
        if let Err(reason) = Self::authorize(policy, &*req) {
            self.stats.requests_denied.fetch_add(1, Ordering::Relaxed);
            return Err(Box::new(forbidden(reason)));
        }
        let app = self.app_for(policy, target, req)?;
        let limited = policy
            .and_then(|p| p.rate_limit.as_ref())
            .is_some_and(|limit| !limit.allow());
        if limited {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::flag(|f| f.rate_limited = true);
            return Err(Box::new(rate_limited(is_grpc(req.headers()))));
        }
        Ok(app)
    }

    /// The app address of `req` (see [`super::target_port`]), which carried
    /// `target` as its `remora-target-port` (taken out: the app never sees
    /// it); a peer asking for a port its Service does not serve over HTTP is
    /// answered 404. Until the inbound listener arrives there is nothing to
    /// check a port against, and every request goes to `app`, as before
    /// target ports.
    fn app_for(
        &self,
        policy: Option<&InboundPolicy>,
        target: Option<http::HeaderValue>,
        req: &Request<Incoming>,
    ) -> Result<SocketAddr, Refusal> {
        let Some(policy) = policy else {
            return Ok(self.addresses.app);
        };
        let peer = req.extensions().get::<PeerIdentity>();
        let caller = match peer {
            Some(_) => Caller::Verified,
            None => Caller::Unverified {
                original_port: req
                    .extensions()
                    .get::<OriginalDestination>()
                    .map(|o| o.0.port()),
            },
        };
        target_port::app_for(target.as_ref(), caller, &policy.http_ports, &self.addresses).map_err(
            |refused| {
                self.stats.unknown_ports.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    peer_identity = peer.map_or("none", |p| &*p.id),
                    method = %req.method(),
                    path = req.uri().path(),
                    target_port = %refused.port,
                    "request refused: not an HTTP port of this Service"
                );
                Box::new(explained(
                    StatusCode::NOT_FOUND,
                    refused.to_string(),
                    "not an HTTP port of this Service",
                ))
            },
        )
    }
}

/// The proxy's own answer to a request it does not forward.
type Refusal = Box<Response<ResponseBody>>;
