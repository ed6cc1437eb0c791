//! Inbound: a request from another proxy (or a plain client) -> the local app, in the
//! protocol the calling app used.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;

use http::uri::Authority;
use http::{header, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::body::Tracked;
use super::headers::{parse_version, retarget, set_host, strip_hop_by_hop};
use super::reply::{forbidden, local, rate_limited, upstream_failure};
use super::server::{Handler, InboundStats, PeerIdentity, Plaintext};
use super::{grpc_status, is_grpc, ResponseBody, CLIENT_ID, ORIG_PROTO};
use crate::authz;
use crate::snapshot::{InboundPolicy, Snapshot};
use crate::telemetry::Metrics;
use crate::upstream::{Endpoint, RequestBody, Transport};
use tokio::time::Instant;

pub struct Inbound {
    app_h1: Endpoint,
    app_h2: Endpoint,
    app_authority: Authority,
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
            app_h1: Endpoint::new(app, Transport::PlainH1),
            app_h2: Endpoint::new(app, Transport::PlainH2),
            app_authority: Authority::try_from(app.to_string())?,
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

    async fn forward(&self, req: Request<Incoming>) -> Response<ResponseBody> {
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
                &self.app_h2,
                authority.unwrap_or_else(|| self.app_authority.clone()),
            )
        } else {
            parts.version = Version::HTTP_11;
            // HTTP/2 callers carry the authority only in the URI; HTTP/1 keep Host.
            if let (Some(a), false) = (&authority, parts.headers.contains_key(header::HOST)) {
                set_host(&mut parts.headers, a);
            }
            (&self.app_h1, self.app_authority.clone())
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
    async fn admit_and_forward(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        if let Some(refused) = self.admit(&req) {
            return refused;
        }
        if super::upgrade::is_extended_connect(&req) {
            return super::upgrade::inbound(self.app_h1.addr(), req).await;
        }
        self.forward(req).await
    }

    /// The inbound policy's refusal of a request (authorization, then the rate
    /// limit), if any; the snapshot is loaded once and not held across the
    /// forwarding.
    fn admit(&self, req: &Request<Incoming>) -> Option<Response<ResponseBody>> {
        if let Some(refused) = super::limits::refuse(req, &self.limits) {
            return Some(refused);
        }
        let snapshot = self.snapshot.load();
        let policy = snapshot.inbound.as_ref();
        if let Err(reason) = Self::authorize(policy, req) {
            self.stats.requests_denied.fetch_add(1, Ordering::Relaxed);
            return Some(forbidden(reason));
        }
        let limited = policy
            .and_then(|p| p.rate_limit.as_ref())
            .is_some_and(|limit| !limit.allow());
        if limited {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::flag(|f| f.rate_limited = true);
            return Some(rate_limited(is_grpc(req.headers())));
        }
        None
    }
}
