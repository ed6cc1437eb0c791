//! Trace context in request headers: W3C `traceparent` (with `tracestate` passed
//! on untouched) and, on input only, B3 (the single `b3` header or the
//! `x-b3-*` headers). Ids are kept as bytes; hex is written only into headers.

use http::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// The caller's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The caller's sampling decision; `None` leaves it to this proxy.
    pub sampled: Option<bool>,
}

/// The trace context a request carries, W3C first, then B3.
pub fn extract(headers: &HeaderMap) -> Option<Parent> {
    if let Some(v) = headers.get(&TRACEPARENT) {
        // An invalid traceparent starts a new trace (W3C Trace Context, 4.3).
        return parse_traceparent(v.as_bytes());
    }
    if let Some(v) = headers.get(&B3) {
        return parse_b3_single(v.as_bytes());
    }
    let trace_id = headers.get(&B3_TRACE_ID)?;
    let span_id = headers.get(&B3_SPAN_ID)?;
    let sampled = if headers.get(&B3_FLAGS).is_some_and(|f| f.as_bytes() == b"1") {
        Some(true)
    } else {
        match headers.get(&B3_SAMPLED).map(HeaderValue::as_bytes) {
            Some(b"1" | b"true") => Some(true),
            Some(b"0" | b"false") => Some(false),
            _ => None,
        }
    };
    Some(Parent {
        trace_id: b3_trace_id(trace_id.as_bytes())?,
        span_id: hex_array(span_id.as_bytes())?,
        sampled,
    })
}

/// Makes `span_id` the parent of whatever the request reaches next. The W3C
/// header is always written; B3 headers the request came with are rewritten
/// so a B3-only app further on still sees its trace continue.
pub fn inject(headers: &mut HeaderMap, trace_id: &TraceId, span_id: &SpanId, sampled: bool) {
    let flags = if sampled { "01" } else { "00" };
    let traceparent = format!("00-{}-{}-{flags}", hex(trace_id), hex(span_id));
    if let Ok(v) = HeaderValue::from_str(&traceparent) {
        headers.insert(TRACEPARENT, v);
    }
    if headers.contains_key(&B3) {
        let single = format!(
            "{}-{}-{}",
            hex(trace_id),
            hex(span_id),
            if sampled { "1" } else { "0" }
        );
        if let Ok(v) = HeaderValue::from_str(&single) {
            headers.insert(B3, v);
        }
    }
    if headers.contains_key(&B3_TRACE_ID) {
        if let Some(parent) = headers.remove(&B3_SPAN_ID) {
            headers.insert(B3_PARENT_SPAN_ID, parent);
        }
        if let Ok(v) = HeaderValue::from_str(&hex(span_id)) {
            headers.insert(B3_SPAN_ID, v);
        }
        let sampled = HeaderValue::from_static(if sampled { "1" } else { "0" });
        headers.insert(B3_SAMPLED, sampled);
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`. Later versions are
/// read for the same first four fields, as the spec asks.
fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || (v.len() > 55 && v.get(55) != Some(&b'-')) {
        return None;
    }
    let version: [u8; 1] = hex_array(&v[0..2])?;
    if version[0] == 0xff || (version[0] == 0 && v.len() != 55) {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let flags: [u8; 1] = hex_array(&v[53..55])?;
    Some(Parent {
        trace_id: non_zero(hex_array(&v[3..35])?)?,
        span_id: non_zero(hex_array(&v[36..52])?)?,
        sampled: Some(flags[0] & 1 == 1),
    })
}

/// `<trace id>-<span id>[-<sampling>[-<parent span id>]]`. A lone sampling
/// decision carries no context to continue.
fn parse_b3_single(v: &[u8]) -> Option<Parent> {
    let mut fields = v.split(|b| *b == b'-');
    let trace_id = b3_trace_id(fields.next()?)?;
    let span_id = non_zero(hex_array(fields.next()?)?)?;
    let sampled = match fields.next() {
        Some(b"1" | b"d") => Some(true),
        Some(b"0") => Some(false),
        _ => None,
    };
    Some(Parent {
        trace_id,
        span_id,
        sampled,
    })
}

/// B3 trace ids are 64 or 128 bits; a 64-bit id is the low half of ours.
fn b3_trace_id(v: &[u8]) -> Option<TraceId> {
    let id = match v.len() {
        32 => hex_array(v)?,
        16 => {
            let low: [u8; 8] = hex_array(v)?;
            let mut id = [0; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    non_zero(id)
}

fn non_zero<const N: usize>(id: [u8; N]) -> Option<[u8; N]> {
    id.iter().any(|b| *b != 0).then_some(id)
}

fn hex_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        // W3C ids are lowercase; B3 senders are not always so careful.
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn traceparent_is_read_and_rewritten() {
        let h = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        let p = extract(&h).unwrap();
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p.span_id), "00f067aa0ba902b7");
        assert_eq!(p.sampled, Some(true));
        let mut h = h;
        inject(&mut h, &p.trace_id, &[1, 2, 3, 4, 5, 6, 7, 8], false);
        assert_eq!(
            h["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-00"
        );
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let h: HeaderMap = [(TRACEPARENT, HeaderValue::from_static(bad))]
                .into_iter()
                .collect();
            assert_eq!(extract(&h), None, "{bad}");
        }
        // A later version may append fields.
        let h = headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more",
        )]);
        assert_eq!(extract(&h).unwrap().sampled, Some(false));
    }

    #[test]
    fn b3_is_read_in_both_forms() {
        let single = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")]);
        let p = extract(&single).unwrap();
        assert_eq!(hex(&p.trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(hex(&p.span_id), "e457b5a2e4d86bd1");
        assert_eq!(p.sampled, Some(true));
        let multi = headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
        ]);
        let p = extract(&multi).unwrap();
        assert_eq!(hex(&p.trace_id), "0000000000000000a3ce929d0e0e4736");
        assert_eq!(p.sampled, None, "no decision: the proxy samples");
        let mut multi = multi;
        inject(&mut multi, &p.trace_id, &[9; 8], true);
        assert_eq!(multi["x-b3-parentspanid"], "00f067aa0ba902b7");
        assert_eq!(multi["x-b3-spanid"], "0909090909090909");
        assert_eq!(multi["x-b3-sampled"], "1");
        assert!(multi.contains_key("traceparent"));
        assert_eq!(extract(&headers(&[("b3", "1")])), None);
    }
}
