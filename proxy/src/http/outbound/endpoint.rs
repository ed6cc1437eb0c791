//! The bottom of the stack: one attempt, shaped for the endpoint's transport and
//! sent. Hop-by-hop headers are removed (`te: trailers` kept for gRPC). To a
//! meshed endpoint the request goes over its shared HTTP/2 connection with the
//! service name as `:authority` (an HTTP/1 request carries `remora-orig-proto`
//! so the far proxy restores it, and `remora-target-port` names the app port
//! when the cluster has a target port); to a plain HTTP/1.1 server with `Host`;
//! to a server outside the mesh under its own name. A gRPC attempt carries what is
//! left of its deadline in `grpc-timeout`.
//!
//! The endpoint keeps its latency estimate (a failure counts as a slow answer,
//! so the balancer steers away from endpoints that fail fast) and its count of
//! requests in flight, until the response body ends.

use std::future::Future;

use futures::future::{self, Either, FutureExt};
use http::uri::Authority;
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use tokio::time::Instant;

use super::service::{Attempt, Picked, Serve};
use crate::http::body::Tracked;
use crate::http::headers::{retarget, set_host, strip_hop_by_hop, version_name};
use crate::http::reply::{explained, local};
use crate::http::{ResponseBody, ORIG_PROTO, TARGET_PORT};
use crate::resilience::deadline::{format_grpc_timeout, GRPC_TIMEOUT};
use crate::upstream::{Endpoint, RequestBody, TargetPort, Transport, UpstreamError};

/// How much a failed attempt counts against an endpoint's latency estimate, so the
/// balancer steers away from endpoints that fail fast.
const FAILURE_PENALTY: std::time::Duration = std::time::Duration::from_secs(1);

/// What became of an attempt at an endpoint.
pub enum Sent {
    /// It went to the endpoint: its answer, or how the exchange failed.
    Exchanged(Result<Response<ResponseBody>, UpstreamError>),
    /// It never left: the proxy's own answer (a target the endpoint's
    /// transport cannot carry).
    Refused(Response<ResponseBody>),
}

/// Sends attempts to the endpoints the balancer picks.
pub struct Client;

impl<'a> Serve<Picked<'a>> for Client {
    type Response = Sent;

    fn call(&self, picked: Picked<'a>) -> impl Future<Output = Sent> + Send {
        let Picked { attempt, endpoint } = picked;
        let Attempt {
            parts,
            body,
            authority,
            cluster,
            grpc,
            deadline,
            ..
        } = attempt;
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        let (mut p, body) = req.into_parts();
        strip_hop_by_hop(&mut p.headers);
        let target = cluster.target_port.as_ref();
        if shape(endpoint, &mut p, authority, parts.version, target).is_err() {
            let refused = local(StatusCode::BAD_REQUEST, "invalid request target");
            return Either::Left(future::ready(Sent::Refused(refused)));
        }
        if let (true, Some(at)) = (grpc, deadline) {
            let left = at.saturating_duration_since(Instant::now());
            p.headers.insert(GRPC_TIMEOUT, format_grpc_timeout(left));
        }
        let sent = send_to(endpoint, Request::from_parts(p, body), parts.version);
        Either::Right(sent.map(move |result| match result {
            Err(error) if refused_for_want_of_certificate(endpoint, &error) => {
                Sent::Refused(needs_certificate(&cluster.destination.0, &error))
            }
            result => Sent::Exchanged(result),
        }))
    }
}

/// Whether `error` is most likely an mTLS peer refusing this proxy's plaintext:
/// the endpoint announced an identity, this proxy has no certificate to meet
/// it, and the connection opened but the exchange failed (a STRICT peer
/// closes a connection whose first bytes are not a TLS handshake).
fn refused_for_want_of_certificate(endpoint: &Endpoint, error: &UpstreamError) -> bool {
    endpoint.reached_without_certificate_to().is_some()
        && !matches!(
            error,
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }
        )
}

/// 502 saying why, so the app (and the user reading its error) learns what
/// only the callee's log would otherwise say. Not the endpoint's fault: the
/// attempt counts as refused, not as a failure of the endpoint.
fn needs_certificate(service: &str, error: &UpstreamError) -> Response<ResponseBody> {
    tracing::debug!(%error, service, "mTLS peer refused a plaintext request: this proxy has no certificate");
    explained(
        StatusCode::BAD_GATEWAY,
        format!(
            "{service} requires mTLS; this proxy has no certificate (give it a token_file, \
             or set the Service's MeshTLS to PERMISSIVE)"
        ),
        "upstream requires mTLS; this proxy has no certificate",
    )
}

/// Shapes a request for `endpoint`'s transport: HTTP/2 with the authority in the
/// URI (and between proxies the app's protocol in `remora-orig-proto` and the
/// cluster's `target` port in `remora-target-port`), or HTTP/1.1 with `Host`; a
/// server outside the mesh is addressed by its own name.
pub fn shape(
    endpoint: &Endpoint,
    parts: &mut http::request::Parts,
    authority: &Authority,
    downstream_version: Version,
    target: Option<&TargetPort>,
) -> Result<(), InvalidTarget> {
    let authority = endpoint.origin_authority().unwrap_or(authority);
    // Only this proxy names the app port a peer is asked for: a value the app
    // sent, or a route's header filter set, never leaves.
    match (endpoint.transport(), target) {
        (Transport::MeshH2, Some(target)) => {
            parts.headers.insert(TARGET_PORT, target.header.clone());
        }
        _ => {
            parts.headers.remove(TARGET_PORT);
        }
    }
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
pub struct InvalidTarget;

/// Sends one request to `endpoint`, keeping its latency estimate and in-flight
/// count; the response body keeps counting as in flight until it ends.
pub async fn send_to(
    endpoint: &Endpoint,
    req: Request<RequestBody>,
    downstream_version: Version,
) -> Result<Response<ResponseBody>, UpstreamError> {
    let in_flight = endpoint.start();
    let started = Instant::now();
    crate::telemetry::note(|f| f.endpoint.set(Some(endpoint.addr())));
    // An attempt cut short (a per-try timeout) waited on its upstream too.
    let waiting = UpstreamClock(started);
    let sent = endpoint.send(req).await;
    drop(waiting);
    match sent {
        Ok(response) => {
            endpoint.ewma().observe(started.elapsed());
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.version = downstream_version;
            Ok(Response::from_parts(
                parts,
                http_body_util::Either::Left(Tracked::new(body, Some(in_flight))),
            ))
        }
        Err(error) => {
            endpoint.ewma().observe(FAILURE_PENALTY);
            Err(error)
        }
    }
}

/// Adds the time since it started to the request's upstream time when
/// dropped: when the answer comes, or when the attempt is given up.
struct UpstreamClock(Instant);

impl Drop for UpstreamClock {
    fn drop(&mut self) {
        crate::telemetry::add_upstream_time(self.0.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::upstream::{ConnectionTimeouts, EndpointRegistry, Peer};

    const ORDERS: &str = "spiffe://cluster.local/ns/default/sa/orders";

    fn addr() -> SocketAddr {
        ([127, 0, 0, 1], 9).into()
    }

    fn refused(addr: SocketAddr) -> UpstreamError {
        UpstreamError::Tls {
            addr,
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        }
    }

    #[tokio::test]
    async fn a_peer_refusing_a_caller_without_certificate_is_explained() {
        let registry = EndpointRegistry::new(None);
        let peer = Peer::Mesh(ORDERS);
        let endpoint =
            registry.endpoint(addr(), Transport::MeshH2, peer, ConnectionTimeouts::DEFAULT);
        assert!(refused_for_want_of_certificate(&endpoint, &refused(addr())));
        let down = UpstreamError::Connect {
            addr: addr(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(
            !refused_for_want_of_certificate(&endpoint, &down),
            "nothing listening is not a refusal"
        );
        let anonymous = registry.endpoint(
            addr(),
            Transport::MeshH2,
            Peer::None,
            ConnectionTimeouts::DEFAULT,
        );
        assert!(!refused_for_want_of_certificate(
            &anonymous,
            &refused(addr())
        ));
    }

    /// The `remora-target-port` a request shaped for `endpoint` carries, when
    /// the app had sent its own.
    fn target_sent(endpoint: &Endpoint, target: Option<&TargetPort>) -> Option<HeaderValue> {
        let (mut parts, ()) = Request::builder()
            .uri("/orders")
            .header(TARGET_PORT, "9999")
            .body(())
            .unwrap()
            .into_parts();
        let authority = Authority::from_static("orders:80");
        assert!(shape(endpoint, &mut parts, &authority, Version::HTTP_11, target).is_ok());
        parts.headers.get(TARGET_PORT).cloned()
    }

    #[tokio::test]
    async fn only_a_meshed_endpoint_is_told_the_target_port_and_never_the_apps() {
        let registry = EndpointRegistry::new(None);
        let timeouts = ConnectionTimeouts::DEFAULT;
        let meshed = registry.endpoint(addr(), Transport::MeshH2, Peer::Mesh(ORDERS), timeouts);
        let plain = registry.endpoint(addr(), Transport::PlainH1, Peer::None, timeouts);
        let target = TargetPort::new(8080);
        assert_eq!(
            target_sent(&meshed, Some(&target)),
            Some(HeaderValue::from_static("8080"))
        );
        assert_eq!(target_sent(&meshed, None), None, "no target: none sent");
        assert_eq!(target_sent(&plain, Some(&target)), None, "not a proxy");
    }

    #[tokio::test]
    async fn the_answer_names_the_service_and_what_to_do() {
        let response = needs_certificate("orders", &refused(addr()));
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let reason = response.headers()["remora-error"].to_str().unwrap();
        assert!(
            reason.starts_with("orders requires mTLS; this proxy has no certificate"),
            "{reason}"
        );
        assert!(reason.contains("token_file") && reason.contains("PERMISSIVE"));
    }
}
