//! The request limits where a request enters the mesh: a request whose headers
//! or declared body are too big is answered here (431, 414, 413) and never
//! reaches a connection other requests share.
//!
//! Not here: what the limits are ([`crate::limits`]).

use http::{Request, StatusCode};

use super::reply::local;
use super::ResponseBody;
use crate::limits::Limits;

/// What HTTP/2 adds to each field's name and value when it sizes a header list
/// (RFC 9113, section 6.5.2); counted the same way for HTTP/1 requests, so the
/// limit means one thing whichever protocol the app speaks.
const FIELD_OVERHEAD: usize = 32;

/// The proxy's own answer to a request over `limits`, if it is.
pub fn refuse<B>(req: &Request<B>, limits: &Limits) -> Option<http::Response<ResponseBody>> {
    let max = limits.max_request_header_bytes;
    // The target travels as `:path` (and `:authority`) on the mesh's HTTP/2 hop.
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + FIELD_OVERHEAD;
    if target > max {
        return Some(local(StatusCode::URI_TOO_LONG, "request target too long"));
    }
    let mut size = target;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + FIELD_OVERHEAD;
        if size > max {
            return Some(local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request headers too large",
            ));
        }
    }
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (Some(max), Some(length)) = (limits.max_request_body_bytes, declared) {
        if length > max {
            return Some(local(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_request_header_bytes: 4096,
            max_request_body_bytes: Some(100),
            ..Limits::default()
        }
    }

    fn status(req: &Request<()>) -> Option<StatusCode> {
        refuse(req, &limits()).map(|r| r.status())
    }

    #[test]
    fn requests_within_the_limits_pass() {
        let req = Request::builder()
            .uri("http://orders/a")
            .header("x-a", "b".repeat(3000))
            .header("content-length", "100")
            .body(())
            .unwrap();
        assert_eq!(status(&req), None);
    }

    #[test]
    fn big_headers_get_431_and_a_long_target_414() {
        let many = (0..200).fold(Request::builder().uri("/"), |b, i| {
            b.header(format!("x-{i}"), "v")
        });
        assert_eq!(
            status(&many.body(()).unwrap()),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let one = Request::builder()
            .uri("/")
            .header("cookie", "c".repeat(5000))
            .body(())
            .unwrap();
        assert_eq!(
            status(&one),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let long = Request::builder()
            .uri(format!("/{}", "p".repeat(5000)))
            .body(())
            .unwrap();
        assert_eq!(status(&long), Some(StatusCode::URI_TOO_LONG));
    }

    #[test]
    fn a_declared_body_over_the_limit_gets_413() {
        let req = Request::builder()
            .uri("/")
            .header("content-length", "101")
            .body(())
            .unwrap();
        assert_eq!(status(&req), Some(StatusCode::PAYLOAD_TOO_LARGE));
        let unlimited = Limits {
            max_request_body_bytes: None,
            ..limits()
        };
        assert!(refuse(&req, &unlimited).is_none());
    }
}
