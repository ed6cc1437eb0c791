//! Answers the proxy gives itself, each with a header that says why.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use super::{ResponseBody, ERROR_HEADER};
use crate::upstream::UpstreamError;

pub fn local(status: StatusCode, reason: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        reason.as_bytes(),
    ))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(reason));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

/// `status` with a reason made at run time, in the body and, when it fits in a
/// header, in `remora-error` (else `fallback` there).
pub fn explained(
    status: StatusCode,
    reason: String,
    fallback: &'static str,
) -> Response<ResponseBody> {
    let header = HeaderValue::from_str(&reason).unwrap_or(HeaderValue::from_static(fallback));
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(reason + "\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(ERROR_HEADER, header);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

/// 403 with the reason in the body and, when it fits in a header, in `remora-error`.
pub fn forbidden(reason: String) -> Response<ResponseBody> {
    explained(StatusCode::FORBIDDEN, reason, "forbidden")
}

/// Which timeout ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// The route's request timeout.
    Request,
    /// The route's per-try timeout, on the last attempt.
    PerTry,
    /// The gRPC client's own deadline (`grpc-timeout`).
    GrpcDeadline,
}

impl TimeoutKind {
    pub fn reason(self) -> &'static str {
        match self {
            TimeoutKind::Request => "request timeout",
            TimeoutKind::PerTry => "per-try timeout",
            TimeoutKind::GrpcDeadline => "grpc deadline exceeded",
        }
    }
}

/// 504 saying which timeout fired; for gRPC, a trailers-only DEADLINE_EXCEEDED.
pub fn timed_out(kind: TimeoutKind, grpc: bool) -> Response<ResponseBody> {
    if !grpc {
        return local(StatusCode::GATEWAY_TIMEOUT, kind.reason());
    }
    grpc_status(4, kind.reason())
}

/// A trailers-only gRPC answer with `code` and `reason`.
pub fn grpc_status(code: u32, reason: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    headers.insert("grpc-message", HeaderValue::from_static(reason));
    headers.insert(ERROR_HEADER, HeaderValue::from_static(reason));
    response
}

/// 429, or for gRPC RESOURCE_EXHAUSTED.
pub fn rate_limited(grpc: bool) -> Response<ResponseBody> {
    if grpc {
        grpc_status(8, "rate limited")
    } else {
        local(StatusCode::TOO_MANY_REQUESTS, "rate limited")
    }
}

/// An aborted request (fault injection).
pub fn fault_abort(abort: crate::resilience::fault::Abort) -> Response<ResponseBody> {
    match abort {
        crate::resilience::fault::Abort::Grpc(code) => grpc_status(code, "fault injected"),
        crate::resilience::fault::Abort::Http(status) => {
            let mut response = local(StatusCode::OK, "fault injected");
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            response
        }
    }
}

/// An upstream that could not be reached (504 when connecting took too long,
/// 503 when it failed) or whose exchange broke (502).
pub fn upstream_failure(error: &UpstreamError) -> Response<ResponseBody> {
    tracing::debug!(%error, "upstream request failed");
    if error.is_connect_timeout() {
        local(StatusCode::GATEWAY_TIMEOUT, "connect timeout")
    } else if error.is_connect() {
        local(StatusCode::SERVICE_UNAVAILABLE, "upstream connect failed")
    } else {
        local(StatusCode::BAD_GATEWAY, "upstream request failed")
    }
}
