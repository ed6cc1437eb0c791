//! Outbound: the app's request -> virtual host by authority -> first matching route ->
//! weighted split -> the attempts (see `attempts`): P2C over the cluster's
//! endpoints, retries and timeouts -> that endpoint.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::uri::Authority;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::attempts;
use super::body::Tracked;
use super::headers::{retarget, set_host, strip_hop_by_hop, version_name};
use super::reply::{fault_abort, local, rate_limited};
use super::server::{DefaultAuthority, Handler};
use super::{ResponseBody, ORIG_PROTO};
use crate::resilience::fault::Share;
use crate::snapshot::{RouteAction, Snapshot, Target};
use crate::telemetry::{HopStats, Metrics};
use crate::upstream::{Cluster, ClusterStats, Endpoint, RequestBody, Transport, UpstreamError};

/// How much a failed attempt counts against an endpoint's latency estimate, so the
/// balancer steers away from endpoints that fail fast.
const FAILURE_PENALTY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Outbound {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    limits: crate::limits::Limits,
}

impl Outbound {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot,
            metrics,
            limits: crate::limits::Limits::default(),
        }
    }

    /// The request limits enforced before routing (see [`super::limits`]): the
    /// app's oversized request is answered here, never sent to a peer.
    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Routes a request and records its hop: the answer, the time to it, and the
    /// time spent in the proxy itself.
    async fn handle_request(&self, mut req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let arrival = crate::telemetry::arrive(&self.metrics, &mut req);
        let ((mut response, hop), learned) = crate::telemetry::observe(self.route(req)).await;
        let elapsed = started.elapsed();
        if let Some(hop) = &hop {
            let grpc = super::grpc_status(response.headers());
            hop.responses.count(response.status().as_u16(), grpc);
            hop.duration.observe(elapsed);
            hop.overhead
                .observe(elapsed.saturating_sub(learned.upstream));
        }
        let (route, backend) = hop
            .as_ref()
            .map_or(("", ""), |h| (h.label("route"), h.label("backend")));
        let hop = crate::telemetry::Hop {
            direction: "outbound",
            route,
            backend,
            peer_identity: "",
        };
        arrival.finish(&self.metrics, &mut response, hop, elapsed, &learned);
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
    ) -> (Response<ResponseBody>, Option<Arc<HopStats>>) {
        if let Some(refused) = super::limits::refuse(&req, &self.limits) {
            return (refused, None);
        }
        let snapshot = self.snapshot.load_full();
        if req.method() == Method::CONNECT {
            let namespace = &self.metrics.namespace;
            return (
                super::connect::tunnel(req, &snapshot, &self.metrics, namespace),
                None,
            );
        }
        let Some(table) = &snapshot.outbound else {
            return (
                local(StatusCode::SERVICE_UNAVAILABLE, "no configuration yet"),
                None,
            );
        };
        // Transparent mode and `upstreams`: the connection already says which
        // Service it is for, whatever `Host` the app sent (an IP, localhost).
        let found =
            request_authority(&req).and_then(|a| Some((table.virtual_host(a.as_str())?, a)));
        let found = found.or_else(|| {
            let fallback = req.extensions().get::<DefaultAuthority>()?;
            let authority = Authority::try_from(&*fallback.0).ok()?;
            Some((table.virtual_host(authority.as_str())?, authority))
        });
        let Some((vhost, authority)) = found else {
            return match request_authority(&req) {
                None => (local(StatusCode::BAD_REQUEST, "missing host"), None),
                Some(_) => (local(StatusCode::NOT_FOUND, "unknown service"), None),
            };
        };
        let Some(route) = vhost.route(req.method(), req.uri().path(), req.headers()) else {
            return (local(StatusCode::NOT_FOUND, "no route matched"), None);
        };
        let RouteAction::Split(split) = &route.action;
        let index = match split.targets.len() {
            1 => Some(0),
            _ => split.pick_index(rand::random_range(0..split.total)),
        };
        let hop = index.and_then(|i| route.hops.get(i).cloned().flatten());
        let response = self.forward(route, index, req, authority).await;
        (response, hop)
    }

    async fn forward(
        &self,
        route: &crate::snapshot::Route,
        index: Option<usize>,
        req: Request<Incoming>,
        authority: Authority,
    ) -> Response<ResponseBody> {
        let RouteAction::Split(split) = &route.action;
        let target = index.and_then(|i| split.targets.get(i)).map(|(_, t)| t);
        let cluster = match target {
            Some(Target::Cluster(c)) => c,
            Some(Target::Missing(name)) => {
                tracing::debug!(cluster = %name, route = %route.name, "route names an unknown cluster");
                return local(StatusCode::SERVICE_UNAVAILABLE, "cluster not found");
            }
            None => return local(StatusCode::SERVICE_UNAVAILABLE, "no backend"),
        };
        let stats = &cluster.state.stats;
        if let Some(limit) = &route.policy.rate_limit {
            if !limit.allow() {
                ClusterStats::count(&stats.rate_limited);
                crate::telemetry::flag(|f| f.rate_limited = true);
                return rate_limited(super::is_grpc(req.headers()));
            }
        }
        let fault = cluster.fault.as_ref().filter(|f| f.applies(req.headers()));
        if let Some(fault) = fault {
            let injected = fault.draw(|| rand::random_range(0..Share::MILLION));
            if injected.delay.is_some() || injected.abort.is_some() {
                crate::telemetry::flag(|f| f.fault_injected = true);
            }
            if let Some(delay) = injected.delay {
                ClusterStats::count(&stats.faults_delayed);
                tracing::debug!(cluster = %cluster.name, ?delay, "fault: delaying");
                tokio::time::sleep(delay).await;
            }
            if let Some(abort) = injected.abort {
                ClusterStats::count(&stats.faults_aborted);
                tracing::debug!(cluster = %cluster.name, ?abort, "fault: aborting");
                return fault_abort(abort);
            }
        }
        let mut req = req;
        route.policy.request_headers.apply(req.headers_mut());
        let mirrors: Vec<Arc<Cluster>> = route
            .policy
            .mirrors
            .iter()
            .filter(|(_, share)| rand::random_range(0..Share::MILLION) < *share)
            .filter_map(|(target, _)| match target {
                Target::Cluster(c) => Some(c.clone()),
                Target::Missing(_) => None,
            })
            .collect();
        if let Some(protocol) = super::upgrade::wanted(&req) {
            let mut response = super::upgrade::outbound(cluster, req, authority, protocol).await;
            route.policy.response_headers.apply(response.headers_mut());
            return response;
        }
        let mut response = attempts::send(cluster, &route.policy, req, authority, mirrors).await;
        route.policy.response_headers.apply(response.headers_mut());
        response
    }
}

impl Handler for Outbound {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        self.handle_request(req).await
    }
}

/// The authority the app asked for: absolute-form or HTTP/2 `:authority`, else `Host`.
fn request_authority(req: &Request<Incoming>) -> Option<Authority> {
    if let Some(a) = req.uri().authority() {
        return Some(a.clone());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
}

/// Shapes a request for `endpoint`'s transport: HTTP/2 with the authority in the
/// URI (and the app's protocol in `remora-orig-proto` between proxies), or
/// HTTP/1.1 with `Host`; a server outside the mesh is addressed by its own name.
pub(super) fn shape(
    endpoint: &Endpoint,
    parts: &mut http::request::Parts,
    authority: &Authority,
    downstream_version: Version,
) -> Result<(), InvalidTarget> {
    let authority = endpoint.origin_authority().unwrap_or(authority);
    let uri_authority = match endpoint.transport() {
        Transport::MeshH2 | Transport::PlainH2 | Transport::TlsH2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            if endpoint.transport() == Transport::MeshH2 && downstream_version != Version::HTTP_2 {
                parts.headers.insert(
                    ORIG_PROTO,
                    HeaderValue::from_static(version_name(downstream_version)),
                );
            }
            authority.clone()
        }
        Transport::PlainH1 => {
            parts.version = Version::HTTP_11;
            if !parts.headers.contains_key(header::HOST) {
                set_host(&mut parts.headers, authority);
            }
            endpoint.authority().clone()
        }
        Transport::TlsH1 => {
            parts.version = Version::HTTP_11;
            set_host(&mut parts.headers, authority);
            endpoint.authority().clone()
        }
    };
    retarget(parts, uri_authority).map_err(|_| InvalidTarget)
}

/// The request's target cannot be rewritten for the endpoint (400).
pub(super) struct InvalidTarget;

/// Sends one attempt to `endpoint`, keeping its latency estimate and in-flight
/// count; the response body keeps counting as in flight until it ends.
pub(super) async fn send_to(
    endpoint: &Endpoint,
    req: Request<RequestBody>,
    downstream_version: Version,
) -> Result<Response<ResponseBody>, UpstreamError> {
    let in_flight = endpoint.start();
    let started = Instant::now();
    crate::telemetry::note(|f| f.endpoint.set(Some(endpoint.addr())));
    let sent = endpoint.send(req).await;
    crate::telemetry::add_upstream_time(started.elapsed());
    match sent {
        Ok(response) => {
            endpoint.ewma().observe(started.elapsed());
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.version = downstream_version;
            Ok(Response::from_parts(
                parts,
                Either::Left(Tracked::new(body, Some(in_flight))),
            ))
        }
        Err(error) => {
            endpoint.ewma().observe(FAILURE_PENALTY);
            Err(error)
        }
    }
}

pub(super) fn upstream_failure(error: &UpstreamError) -> Response<ResponseBody> {
    tracing::debug!(%error, "upstream request failed");
    if error.is_connect_timeout() {
        local(StatusCode::GATEWAY_TIMEOUT, "connect timeout")
    } else if error.is_connect() {
        local(StatusCode::SERVICE_UNAVAILABLE, "upstream connect failed")
    } else {
        local(StatusCode::BAD_GATEWAY, "upstream request failed")
    }
}
