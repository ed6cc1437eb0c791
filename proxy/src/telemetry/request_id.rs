//! Correlation ids: a request without `x-request-id` gets one (a random UUID v4)
//! on entering the mesh; one it already has is passed on untouched, so one id
//! follows a request across every hop.

use http::{HeaderMap, HeaderName, HeaderValue};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives the request an id if it has none; returns the id it carries.
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&REQUEST_ID).filter(|v| !v.is_empty()) {
        return id.clone();
    }
    let id = new_id();
    headers.insert(REQUEST_ID, id.clone());
    id
}

/// A random UUID (version 4, RFC 9562).
pub fn new_id() -> HeaderValue {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let text = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(
        "00000000-0000-4000-8000-000000000000",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_made_once_and_kept() {
        let mut h = HeaderMap::new();
        let id = ensure(&mut h);
        let text = id.to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4", "version 4");
        assert_eq!(ensure(&mut h), id, "kept");
        h.insert(REQUEST_ID, HeaderValue::from_static("from-the-client"));
        assert_eq!(ensure(&mut h), "from-the-client");
        assert_ne!(new_id(), new_id());
    }
}
