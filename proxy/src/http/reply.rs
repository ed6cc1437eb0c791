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
