//! Routing: the virtual host by authority (absolute-form URI, `:authority` or
//! `Host`; in transparent mode, else the Service the app dialled), its first
//! matching route, and a target of the route's weighted split. The request
//! goes down with its route's policy and cluster; the answer comes back with
//! the metrics of the hop it took.
//!
//! Not here: loading the snapshot and `CONNECT` (the handler, `super`).

use std::future::Future;
use std::sync::Arc;

use futures::future::{self, Either, FutureExt};
use http::uri::Authority;
use http::{header, Request, Response, StatusCode};

use super::service::{Routed, Serve};
use crate::http::reply::local;
use crate::http::server::DefaultAuthority;
use crate::http::ResponseBody;
use crate::snapshot::{RouteAction, RoutePolicy, RouteTable, Target};
use crate::telemetry::HopStats;
use crate::upstream::{Cluster, RequestBody};

pub struct RouteLayer;

impl<S> tower::Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route { inner }
    }
}

pub struct Route<S> {
    inner: S,
}

/// The answer, with the hop it counts under (none before a target is chosen).
pub type Answer = (Response<ResponseBody>, Option<Arc<HopStats>>);

impl<'t, S> Serve<(&'t RouteTable, Request<RequestBody>)> for Route<S>
where
    S: for<'r> Serve<Routed<'r>, Response = Response<ResponseBody>>,
{
    type Response = Answer;

    fn call(
        &self,
        (table, req): (&'t RouteTable, Request<RequestBody>),
    ) -> impl Future<Output = Answer> + Send {
        let (decision, hop) = decide(table, &req);
        match decision {
            Decision::Refuse(status, reason) => {
                Either::Left(future::ready((local(status, reason), hop)))
            }
            Decision::Forward {
                authority,
                policy,
                cluster,
            } => {
                let routed = Routed::new(req, authority, policy, cluster);
                Either::Right(self.inner.call(routed).map(move |response| (response, hop)))
            }
        }
    }
}

enum Decision<'a> {
    /// Nothing to route to: the proxy answers with this status and reason.
    Refuse(StatusCode, &'static str),
    Forward {
        authority: Authority,
        policy: &'a RoutePolicy,
        cluster: &'a Cluster,
    },
}

/// Where `req` goes, and the hop it counts under once a target is chosen.
fn decide<'a>(
    table: &'a RouteTable,
    req: &Request<RequestBody>,
) -> (Decision<'a>, Option<Arc<HopStats>>) {
    // Transparent mode and `upstreams`: the connection already says which
    // Service it is for, whatever `Host` the app sent (an IP, localhost).
    let found = request_authority(req).and_then(|a| Some((table.virtual_host(a.as_str())?, a)));
    let found = found.or_else(|| {
        let fallback = req.extensions().get::<DefaultAuthority>()?;
        let authority = Authority::try_from(&*fallback.0).ok()?;
        Some((table.virtual_host(authority.as_str())?, authority))
    });
    let Some((vhost, authority)) = found else {
        let refused = match request_authority(req) {
            None => Decision::Refuse(StatusCode::BAD_REQUEST, "missing host"),
            Some(_) => Decision::Refuse(StatusCode::NOT_FOUND, "unknown service"),
        };
        return (refused, None);
    };
    let Some(route) = vhost.route(req.method(), req.uri().path(), req.headers()) else {
        return (
            Decision::Refuse(StatusCode::NOT_FOUND, "no route matched"),
            None,
        );
    };
    let RouteAction::Split(split) = &route.action;
    let index = match split.targets.len() {
        1 => Some(0),
        _ => split.pick_index(rand::random_range(0..split.total)),
    };
    let hop = index.and_then(|i| route.hops.get(i).cloned().flatten());
    let target = index.and_then(|i| split.targets.get(i)).map(|(_, t)| t);
    let decision = match target {
        Some(Target::Cluster(cluster)) => Decision::Forward {
            authority,
            policy: &route.policy,
            cluster,
        },
        Some(Target::Missing(name)) => {
            tracing::debug!(cluster = %name, route = %route.name, "route names an unknown cluster");
            Decision::Refuse(StatusCode::SERVICE_UNAVAILABLE, "cluster not found")
        }
        None => Decision::Refuse(StatusCode::SERVICE_UNAVAILABLE, "no backend"),
    };
    (decision, hop)
}

/// The authority the app asked for: absolute-form or HTTP/2 `:authority`, else `Host`.
fn request_authority<B>(req: &Request<B>) -> Option<Authority> {
    if let Some(a) = req.uri().authority() {
        return Some(a.clone());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
}
