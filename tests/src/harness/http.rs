//! A one-shot HTTP client for tests: one connection per request, whole body read,
//! bounded by a timeout. For admin endpoints, the control-plane API, and single
//! requests through a proxy. (Sustained traffic is [`crate::load`].)

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// How long [`send`] waits for a whole response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole response.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpReply {
    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response is not JSON: {}", self.text()))
    }
}

/// `GET path` from `addr` with `Host: addr`, over HTTP/1.1.
pub async fn get(addr: SocketAddr, path: &str) -> Result<HttpReply> {
    get_with_host(addr, &addr.to_string(), path).await
}

/// `GET path` from `addr` with the given `Host` (a service name when `addr` is a
/// proxy's outbound listener), over HTTP/1.1.
pub async fn get_with_host(addr: SocketAddr, host: &str, path: &str) -> Result<HttpReply> {
    let request = Request::get(path)
        .header(HOST, host)
        .body(Full::new(Bytes::new()))
        .with_context(|| format!("invalid request: host `{host}`, path `{path}`"))?;
    send(addr, request).await
}

/// Send `request` to `addr` on a new connection and read the whole response.
///
/// The request's version picks the protocol: `HTTP/2` is h2c with prior knowledge
/// (the `:authority` comes from the URI, else the `Host` header, else `addr`);
/// anything else is HTTP/1.1 (a missing `Host` is set from the URI or `addr`).
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Result<HttpReply> {
    tokio::time::timeout(REQUEST_TIMEOUT, send_now(addr, request))
        .await
        .map_err(|_| anyhow!("no response from {addr} within {REQUEST_TIMEOUT:?}"))?
}

async fn send_now(addr: SocketAddr, mut request: Request<Full<Bytes>>) -> Result<HttpReply> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true).ok();
    let io = TokioIo::new(stream);
    let response = if request.version() == Version::HTTP_2 {
        make_absolute(&mut request, addr)?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .with_context(|| format!("h2 handshake with {addr} failed"))?;
        tokio::spawn(conn);
        sender.send_request(request).await
    } else {
        if !request.headers().contains_key(HOST) {
            let host = match request.uri().authority() {
                Some(a) => a.to_string(),
                None => addr.to_string(),
            };
            let value = HeaderValue::from_str(&host).context("invalid host")?;
            request.headers_mut().insert(HOST, value);
        }
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .with_context(|| format!("HTTP/1.1 handshake with {addr} failed"))?;
        tokio::spawn(conn);
        sender.send_request(request).await
    }
    .with_context(|| format!("request to {addr} failed"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .with_context(|| format!("reading the response body from {addr} failed"))?
        .to_bytes();
    Ok(HttpReply {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

/// HTTP/2 needs `:scheme` and `:authority`: give a path-only URI both.
fn make_absolute(request: &mut Request<Full<Bytes>>, addr: SocketAddr) -> Result<()> {
    if request.uri().authority().is_some() {
        return Ok(());
    }
    let authority = match request.headers().get(HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => host.to_owned(),
        None => addr.to_string(),
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!("http://{authority}{path}")
        .parse()
        .with_context(|| format!("invalid authority `{authority}`"))?;
    *request.uri_mut() = uri;
    request.headers_mut().remove(HOST);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_requests_take_their_authority_from_host() {
        let mut req = Request::get("/a?b=1")
            .header(HOST, "orders")
            .body(Full::new(Bytes::new()))
            .unwrap();
        make_absolute(&mut req, "127.0.0.1:1".parse().unwrap()).unwrap();
        assert_eq!(req.uri().to_string(), "http://orders/a?b=1");
        assert!(req.headers().get(HOST).is_none());
    }
}
