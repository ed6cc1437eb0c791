//! The standard gRPC health check of the app (`grpc.health.v1.Health/Check`),
//! for a kubelet `grpc` probe the proxy runs (see [`super::app_health`]).
//!
//! As the kubelet does: one unary call over HTTP/2 cleartext with prior
//! knowledge (apps serve their gRPC probe port without TLS), asking about the
//! probe's `service` (`""`: the server as a whole). Success only when the
//! answer is HTTP 200, `grpc-status` 0 (in the trailers, or in the headers of
//! a trailers-only answer) and a `HealthCheckResponse` whose status is
//! SERVING; anything else fails with a reason naming what came back.
//!
//! Not a gRPC client: no compression, no retries, no `grpc-timeout` (the
//! probe's timeout wraps the whole call), and the two messages are declared
//! here rather than generated from `health.proto`.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

use crate::grpc::{code_name, grpc_status};

/// The health service's unary method.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The most of the app's answer that is read: a `HealthCheckResponse` is a
/// few bytes, and a misbehaving app must not make the proxy buffer without
/// bound.
const MAX_BODY: usize = 64 * 1024;

/// A gRPC message's prefix: a compressed flag, then a big-endian length.
const PREFIX: usize = 5;

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// The most of a `grpc-message` quoted in a reason.
const MAX_QUOTED: usize = 200;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`. The enum travels as a varint like
/// an `int32`; kept as the number so a value this code does not know is
/// still named in the reason.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// Asks the app at `addr` whether `service` is SERVING: the text of a 200
/// when it is, else the reason it is not.
pub(super) async fn check(addr: SocketAddr, service: &str) -> Result<String, String> {
    let body = request_body(service)?;
    let request = build(addr, body).map_err(|e| format!("{CHECK_PATH}: {e}"))?;
    let stream = super::app_health::connect(addr).await?;
    // hyper's HTTP/2 client runs the connection's I/O in a task of its own
    // (the executor's). When the probe times out this future is dropped, and
    // the sender, the request and `connection` with it: that task is left
    // with no stream and no handle, sends GOAWAY and ends, closing the
    // socket. So an app that never answers leaks nothing, probe after probe.
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("{addr}: HTTP/2 handshake: {e}"))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("POST {addr}{CHECK_PATH}: {e}"))?;
        verdict(response).await
    };
    // `connection` hands the request to that task: it is driven here beside
    // the exchange, and dropped with it.
    tokio::pin!(exchange, connection);
    let outcome = tokio::select! {
        outcome = &mut exchange => outcome,
        // Ended first: what the task read is waiting in `exchange`.
        _ = &mut connection => exchange.await,
    };
    match &outcome {
        Ok(_) => tracing::debug!(%addr, service, "app gRPC probe: SERVING"),
        Err(reason) => tracing::debug!(%addr, service, %reason, "app gRPC probe failed"),
    }
    outcome
}

/// The kubelet's call: a POST of one gRPC message, trailers accepted.
fn build(addr: SocketAddr, body: Bytes) -> Result<Request<Full<Bytes>>, http::Error> {
    // HTTP/2 needs the scheme and authority: the URI is absolute.
    Request::post(format!("http://{addr}{CHECK_PATH}"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, "remora-proxy app-health")
        .body(Full::new(body))
}

/// What the app's answer says: the text of a 200 when SERVING, else the
/// reason.
async fn verdict(response: Response<Incoming>) -> Result<String, String> {
    let (head, body) = response.into_parts();
    if head.status != StatusCode::OK {
        return Err(format!("the app answered HTTP {}", head.status));
    }
    // A trailers-only answer (how gRPC servers fail a call at once) has its
    // status in the headers and no body worth reading.
    if let Some(code) = grpc_status(&head.headers).filter(|code| *code != 0) {
        return Err(failed(code, &head.headers));
    }
    let collected = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let message = collected.to_bytes();
    let status_in = if grpc_status(&trailers).is_some() {
        &trailers
    } else {
        &head.headers
    };
    match grpc_status(status_in) {
        Some(0) => {}
        Some(code) => return Err(failed(code, status_in)),
        None => return Err("no grpc-status came back".into()),
    }
    match serving_status(&message)? {
        SERVING => Ok("the app is SERVING\n".into()),
        other => Err(format!("status {}", status_name(other))),
    }
}

/// The request's body: one uncompressed gRPC message, the
/// `HealthCheckRequest` for `service`.
fn request_body(service: &str) -> Result<Bytes, String> {
    let message = HealthCheckRequest {
        service: service.to_owned(),
    }
    .encode_to_vec();
    let len = u32::try_from(message.len())
        .map_err(|_| "grpc.service: longer than a gRPC message may be".to_owned())?;
    let mut body = BytesMut::with_capacity(PREFIX + message.len());
    body.put_u8(0);
    body.put_u32(len);
    body.put_slice(&message);
    Ok(body.freeze())
}

/// The `status` of the `HealthCheckResponse` a unary answer's body holds.
fn serving_status(body: &[u8]) -> Result<i32, String> {
    let Some((prefix, rest)) = body.split_first_chunk::<PREFIX>() else {
        return Err("no HealthCheckResponse came back".into());
    };
    let [compressed, length @ ..] = *prefix;
    if compressed != 0 {
        return Err("the HealthCheckResponse came compressed, which was not asked for".into());
    }
    let len = u32::from_be_bytes(length) as usize;
    let message = rest.get(..len).ok_or_else(|| {
        format!(
            "the HealthCheckResponse is cut short: {} of {len} bytes",
            rest.len()
        )
    })?;
    HealthCheckResponse::decode(message)
        .map(|response| response.status)
        .map_err(|e| format!("not a HealthCheckResponse: {e}"))
}

/// `ServingStatus` by name, or its number when it has none.
fn status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// `grpc-status 12 (UNIMPLEMENTED)`, and the `grpc-message` when there is
/// one.
fn failed(code: u32, headers: &HeaderMap) -> String {
    let name = code_name(code)
        .map(|name| format!(" ({name})"))
        .unwrap_or_default();
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {}", m.chars().take(MAX_QUOTED).collect::<String>()))
        .unwrap_or_default();
    format!("grpc-status {code}{name}{message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_one_uncompressed_message_naming_the_service() {
        // proto3 leaves an empty string out: the message is empty.
        assert_eq!(&request_body("").unwrap()[..], &[0, 0, 0, 0, 0]);
        // Field 1, length-delimited (0x0a), one byte: "x".
        assert_eq!(
            &request_body("x").unwrap()[..],
            &[0, 0, 0, 0, 3, 0x0a, 1, b'x']
        );
    }

    #[test]
    fn the_answers_status_is_read_from_its_message() {
        // Field 1, varint (0x08).
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(SERVING));
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        assert_eq!(status_name(2), "NOT_SERVING");
        // An empty message is the default: UNKNOWN.
        assert_eq!(serving_status(&[0, 0, 0, 0, 0]), Ok(0));
        assert_eq!(status_name(9), "9");
    }

    #[test]
    fn an_answer_that_is_not_a_health_check_response_is_named() {
        for (body, expected) in [
            (&[][..], "no HealthCheckResponse"),
            (&[0, 0, 0][..], "no HealthCheckResponse"),
            (&[1, 0, 0, 0, 2, 0x08, 1][..], "compressed"),
            (&[0, 0, 0, 0, 9, 0x08, 1][..], "cut short: 2 of 9 bytes"),
            // A key whose varint never ends.
            (
                &[0, 0, 0, 0, 2, 0xff, 0xff][..],
                "not a HealthCheckResponse",
            ),
            // Field 1 as a string, not a varint.
            (
                &[0, 0, 0, 0, 3, 0x0a, 1, b'x'][..],
                "not a HealthCheckResponse",
            ),
        ] {
            let err = serving_status(body).unwrap_err();
            assert!(err.contains(expected), "{body:?}: {err}");
        }
    }

    #[test]
    fn a_failed_call_is_named_by_its_code_and_message() {
        let mut headers = HeaderMap::new();
        assert_eq!(failed(12, &headers), "grpc-status 12 (UNIMPLEMENTED)");
        headers.insert("grpc-message", "no such service".parse().unwrap());
        assert_eq!(
            failed(5, &headers),
            "grpc-status 5 (NOT_FOUND): no such service"
        );
        assert_eq!(failed(99, &HeaderMap::new()), "grpc-status 99");
    }
}
