//! `CONNECT` through the outbound listener (explicit mode for any protocol, as an
//! HTTP proxy client sends it): `CONNECT redis.default:6379` answers 200 and the
//! connection becomes an opaque TCP tunnel to that Service port, carried over
//! the mesh as the bootstrap's `upstreams` are. Only opaque ports are tunnelled:
//! an HTTP port is reached with ordinary requests, which keep the HTTP features.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::reply::local;
use super::ResponseBody;
use crate::snapshot::{Carry, Destinations, Snapshot};
use crate::tcp::carry::{self, Facts};
use crate::tcp::Tunnel;
use crate::telemetry::Metrics;

const HTTP_PORT: &str = "an HTTP port: send requests to it, not CONNECT";

/// Answers a `CONNECT`; the tunnel is carried in a task of its own once the
/// client has the 200.
pub fn tunnel(
    req: Request<Incoming>,
    snapshot: &Snapshot,
    metrics: &Arc<Metrics>,
    namespace: &str,
) -> Response<ResponseBody> {
    let Some(authority) = req.uri().authority() else {
        return local(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let Some(port) = authority.port_u16() else {
        return local(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let Some((service, ns)) = service_of(authority.host(), namespace) else {
        return local(StatusCode::NOT_FOUND, "unknown service");
    };
    let name = Destinations::key(service, ns, port);
    let Some(destination) = snapshot.destinations.by_name.get(&name) else {
        let http = snapshot
            .outbound
            .as_ref()
            .is_some_and(|t| t.virtual_host(authority.as_str()).is_some());
        return if http {
            local(StatusCode::METHOD_NOT_ALLOWED, HTTP_PORT)
        } else {
            local(StatusCode::NOT_FOUND, "unknown service")
        };
    };
    let Carry::Opaque {
        cluster,
        idle_timeout,
    } = &destination.carry
    else {
        return local(StatusCode::METHOD_NOT_ALLOWED, HTTP_PORT);
    };
    let Some(cluster) = snapshot.clusters.get(cluster).cloned() else {
        return local(StatusCode::SERVICE_UNAVAILABLE, "cluster not found");
    };
    let (idle, metrics) = (*idle_timeout, metrics.clone());
    let facts = Facts {
        detected: "connect",
        opaque_reason: "connect",
        app_protocol: destination.app_protocol.clone(),
        ..Default::default()
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let client = Tunnel(TokioIo::new(upgraded));
                carry::to_cluster(client, &cluster, None, name, port, idle, &metrics, facts).await
            }
            Err(error) => tracing::debug!(%error, "CONNECT tunnel not established"),
        }
    });
    Response::new(ResponseBody::Right(Default::default()))
}

/// `redis`, `redis.shop`, `redis.shop.svc` or `redis.shop.svc.cluster.local` ->
/// (Service, namespace); a short name is in the proxy's own namespace.
fn service_of<'a>(host: &'a str, namespace: &'a str) -> Option<(&'a str, &'a str)> {
    let host = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    match host.split_once('.') {
        None if !host.is_empty() => Some((host, namespace)),
        Some((service, ns)) if !service.is_empty() && !ns.is_empty() && !ns.contains('.') => {
            Some((service, ns))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::service_of;

    #[test]
    fn names_resolve_like_cluster_dns() {
        assert_eq!(service_of("redis", "shop"), Some(("redis", "shop")));
        assert_eq!(service_of("redis.db", "shop"), Some(("redis", "db")));
        assert_eq!(service_of("redis.db.svc", "shop"), Some(("redis", "db")));
        assert_eq!(
            service_of("redis.db.svc.cluster.local", "shop"),
            Some(("redis", "db"))
        );
        assert_eq!(service_of("example.com.evil", "shop"), None);
        assert_eq!(service_of("", "shop"), None);
    }
}
