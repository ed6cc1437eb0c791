//! Hop-by-hop header handling (RFC 9110 section 7.6.1) and protocol bridging.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, InvalidUriParts, PathAndQuery, Scheme};
use http::{Uri, Version};

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
];

/// Removes headers that belong to one connection, including those named in
/// `Connection`. `te: trailers` survives: gRPC needs it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Every Connection header counts, and its bytes are read as they are: names
    // listed in a second one, or beside a non-ASCII byte, are still this hop's.
    let mut values = headers.get_all(header::CONNECTION).iter();
    match (values.next().cloned(), values.next().is_some()) {
        (None, _) => {}
        (Some(only), false) => remove_listed(headers, &only),
        (Some(_), true) => {
            let all: Vec<_> = headers
                .get_all(header::CONNECTION)
                .iter()
                .cloned()
                .collect();
            for listed in &all {
                remove_listed(headers, listed);
            }
        }
    }
    let keep_te = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in &HOP_BY_HOP {
        if *name == header::TE && keep_te {
            continue;
        }
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

fn remove_listed(headers: &mut HeaderMap, listed: &http::HeaderValue) {
    for name in listed.as_bytes().split(|b| *b == b',') {
        if let Ok(name) = HeaderName::from_bytes(name.trim_ascii()) {
            headers.remove(name);
        }
    }
}

/// Points a request at `authority`, keeping its path and query (`/` if it had none).
pub fn retarget(
    parts: &mut http::request::Parts,
    authority: Authority,
) -> Result<(), InvalidUriParts> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    parts.uri = Uri::from_parts(uri)?;
    Ok(())
}

/// Sets `Host` to `authority` (for HTTP/1, where the URI no longer carries it).
pub fn set_host(headers: &mut HeaderMap, authority: &Authority) {
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(header::HOST, host);
    }
}

pub fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/3",
    }
}

pub fn parse_version(s: &[u8]) -> Option<Version> {
    match s {
        b"HTTP/1.0" => Some(Version::HTTP_10),
        b"HTTP/1.1" => Some(Version::HTTP_11),
        b"HTTP/2" => Some(Version::HTTP_2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_and_the_headers_it_names() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-public", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-private").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert!(h.get("x-public").is_some());
    }

    #[test]
    fn every_connection_header_counts() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "keep-alive".parse().unwrap());
        h.append(header::CONNECTION, "x-second".parse().unwrap());
        h.append(
            header::CONNECTION,
            http::HeaderValue::from_bytes(b"x-third, \xff").unwrap(),
        );
        for name in ["x-second", "x-third", "x-public"] {
            h.insert(name, "1".parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-second").is_none() && h.get("x-third").is_none());
        assert!(h.get("x-public").is_some());
    }
}
