//! Answers the proxy gives itself, each with a header that says why.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use super::{ResponseBody, ERROR_HEADER};

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

/// 403 with the reason in the body and, when it fits in a header, in `remora-error`.
pub fn forbidden(reason: String) -> Response<ResponseBody> {
    let header = HeaderValue::from_str(&reason).ok();
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(reason + "\n"))));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(
        ERROR_HEADER,
        header.unwrap_or(HeaderValue::from_static("forbidden")),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
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
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static("4"));
    headers.insert("grpc-message", HeaderValue::from_static(kind.reason()));
    headers.insert(ERROR_HEADER, HeaderValue::from_static(kind.reason()));
    response
}
