//! HTTP/1.1 `Upgrade` (WebSocket and the like) through the mesh. Between the
//! proxies it rides the shared HTTP/2 connection as an extended CONNECT (RFC
//! 8441: `:protocol` names what the app asked to upgrade to), so it keeps mTLS,
//! routing, authorization and metrics; each proxy speaks HTTP/1.1 Upgrade with
//! its own app, and once both sides have switched the two streams are spliced.
//!
//! client app --GET + Upgrade--> proxy --CONNECT :protocol (h2, mTLS)--> proxy
//!   --GET + Upgrade--> server app; 101 <-- 200 (the app's 101 headers) <-- 101.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::Tracked;
use super::headers::{retarget, set_host, strip_hop_by_hop};
use super::reply::{local, upstream_failure};
use super::{ResponseBody, TARGET_PORT};
use crate::upstream::{Cluster, RequestBody, Transport};

/// How long the app gets to accept the connection and answer the upgrade.
const APP_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol an HTTP/1.1 request asks to upgrade to (`Connection: upgrade`
/// and `Upgrade: websocket`), if it does.
pub fn wanted<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() > Version::HTTP_11 {
        return None;
    }
    let protocol = req.headers().get(header::UPGRADE)?;
    let asks = req.headers().get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    asks.then(|| protocol.clone())
}

/// Whether a request between proxies is an upgrade (an extended CONNECT).
pub fn is_extended_connect(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT && req.extensions().get::<hyper::ext::Protocol>().is_some()
}

/// Outbound: the app's upgrade request to a meshed endpoint of `cluster`, as an
/// extended CONNECT; answers the app 101 once the far side switched.
pub async fn outbound(
    cluster: &Cluster,
    mut req: Request<RequestBody>,
    authority: Authority,
    protocol: HeaderValue,
) -> Response<ResponseBody> {
    let Some(chosen) = cluster.pick(None) else {
        return local(StatusCode::SERVICE_UNAVAILABLE, "no endpoints");
    };
    let endpoint = chosen.endpoint.clone();
    if endpoint.transport() != Transport::MeshH2 {
        return local(
            StatusCode::NOT_IMPLEMENTED,
            "upgrade is carried to meshed endpoints only",
        );
    }
    let Ok(protocol_name) = protocol.to_str() else {
        return local(StatusCode::BAD_REQUEST, "invalid upgrade protocol");
    };
    let downstream = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    // The peer's app port, as `endpoint::shape` names it for requests.
    match &cluster.target_port {
        Some(target) => parts.headers.insert(TARGET_PORT, target.header.clone()),
        None => parts.headers.remove(TARGET_PORT),
    };
    parts.method = Method::CONNECT;
    parts.version = Version::HTTP_2;
    parts.extensions = http::Extensions::new();
    parts
        .extensions
        .insert(hyper::ext::Protocol::from(protocol_name));
    if retarget(&mut parts, authority).is_err() {
        return local(StatusCode::BAD_REQUEST, "invalid request target");
    }
    let sent = endpoint
        .send(Request::from_parts(parts, RequestBody::Empty))
        .await;
    cluster.record_outcome(&endpoint, sent.is_ok());
    let mut response = match sent {
        Ok(r) => r,
        Err(error) => return upstream_failure(&error),
    };
    if !response.status().is_success() {
        // The far side (or its app) refused: its answer, as it is.
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        return Response::from_parts(parts, Either::Left(Tracked::new(body, None)));
    }
    let upstream = hyper::upgrade::on(&mut response);
    let mut switching = switching_protocols(response.headers(), &protocol);
    *switching.version_mut() = Version::HTTP_11;
    splice(downstream, upstream);
    switching
}

/// Inbound: a peer proxy's extended CONNECT -> an HTTP/1.1 upgrade request to
/// the app on a connection of its own; 200 with the app's 101 headers.
pub async fn inbound(app: SocketAddr, mut req: Request<Incoming>) -> Response<ResponseBody> {
    let Some(protocol) = req
        .extensions()
        .get::<hyper::ext::Protocol>()
        .and_then(|p| HeaderValue::from_str(p.as_str()).ok())
    else {
        return local(StatusCode::BAD_REQUEST, "invalid upgrade protocol");
    };
    let downstream = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    let authority = parts.uri.authority().cloned();
    strip_hop_by_hop(&mut parts.headers);
    parts.method = Method::GET;
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| http::Uri::from(p.clone()))
        .unwrap_or_else(|| http::Uri::from_static("/"));
    if let Some(authority) = &authority {
        set_host(&mut parts.headers, authority);
    }
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, protocol.clone());
    let request = Request::from_parts(parts, Empty::<Bytes>::new());
    let answered = tokio::time::timeout(APP_TIMEOUT, async {
        let stream = TcpStream::connect(app).await?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "app upgrade connection ended");
            }
        });
        sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)
    })
    .await;
    let mut response = match answered {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::debug!(%app, %error, "upgrade to the app failed");
            return local(StatusCode::BAD_GATEWAY, "upstream request failed");
        }
        Err(_) => return local(StatusCode::GATEWAY_TIMEOUT, "upstream timeout"),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_2;
        return Response::from_parts(parts, Either::Left(Tracked::new(body, None)));
    }
    let upstream = hyper::upgrade::on(&mut response);
    let mut ok = switching_protocols(response.headers(), &protocol);
    // Between proxies the upgrade is the CONNECT's 200.
    ok.headers_mut().remove(header::CONNECTION);
    ok.headers_mut().remove(header::UPGRADE);
    *ok.status_mut() = StatusCode::OK;
    splice(downstream, upstream);
    ok
}

/// A 101 carrying `headers` (the far app's: `Sec-WebSocket-Accept`, ...) less
/// the hop-by-hop ones, and this hop's `Connection`/`Upgrade`.
fn switching_protocols(
    headers: &http::HeaderMap,
    protocol: &HeaderValue,
) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Default::default()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    for (name, value) in headers {
        out.append(name, value.clone());
    }
    strip_hop_by_hop(out);
    out.remove(header::CONTENT_LENGTH);
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, protocol.clone());
    response
}

/// Once both sides have switched, copies bytes both ways until either ends.
fn splice(downstream: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (down, up) = match tokio::try_join!(downstream, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade not completed");
                return;
            }
        };
        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
        match tokio::io::copy_bidirectional(&mut down, &mut up).await {
            Ok((sent, received)) => tracing::debug!(sent, received, "upgraded connection ended"),
            Err(error) => tracing::debug!(%error, "upgraded connection failed"),
        }
    });
}
