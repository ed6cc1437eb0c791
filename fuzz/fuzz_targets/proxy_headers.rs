//! Request header values the proxy parses by hand: trace context (W3C
//! `traceparent`, B3 single `b3` and multi `x-b3-*`; `tracestate` is passed on
//! untouched), `x-request-id`, `grpc-timeout`, `grpc-status`, `content-type`,
//! `connection`/`te` (hop-by-hop headers), `remora-orig-proto`, and the
//! consistent-hashing key (a header, or a cookie out of `cookie`). Nothing may
//! panic, and what the proxy writes must read back.
//!
//! Input: a header block, `name: value` lines (invalid ones are skipped, as
//! hyper would refuse them).
#![no_main]

use std::time::Duration;

use http::header::{CONNECTION, TE};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use remora_proxy::fuzzing;
use remora_proxy::http::{grpc_status, is_grpc, ORIG_PROTO};
use remora_proxy::resilience::deadline::{format_grpc_timeout, parse_grpc_timeout};
use remora_proxy::snapshot::HashPolicy;
use remora_proxy::telemetry::request_id::{self, REQUEST_ID};
use remora_proxy::telemetry::trace::context::{self, Parent, TRACEPARENT};

const MAX_HEADERS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let headers = header_block(data);
    trace_context(&headers);
    request_id_is_kept(&headers);
    grpc(&headers);
    hop_by_hop(&headers);
    orig_proto(&headers);
    hash_keys(&headers);
});

fn header_block(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n').take(MAX_HEADERS) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

/// The context read is a valid one, and the one written (this hop's span) reads
/// back, from `traceparent` and from a rewritten `b3`.
fn trace_context(headers: &HeaderMap) {
    let parent = context::extract(headers);
    if let Some(p) = parent {
        assert!(
            p.trace_id != [0; 16] && p.span_id != [0; 8],
            "an all-zero id was read: {p:?}"
        );
    }
    let trace_id = parent.map_or([0x4b; 16], |p| p.trace_id);
    let span_id = [0x5c; 8];
    for sampled in [false, true] {
        let written = Parent {
            trace_id,
            span_id,
            sampled: Some(sampled),
        };
        let mut out = headers.clone();
        context::inject(&mut out, &trace_id, &span_id, sampled);
        assert_eq!(context::extract(&out), Some(written), "traceparent");
        if out.contains_key("b3") {
            out.remove(TRACEPARENT);
            assert_eq!(context::extract(&out), Some(written), "b3");
        }
    }
}

fn request_id_is_kept(headers: &HeaderMap) {
    let mut out = headers.clone();
    let id = request_id::ensure(&mut out);
    match headers.get(REQUEST_ID).filter(|v| !v.is_empty()) {
        Some(sent) => assert_eq!(&id, sent, "the request's id is passed on"),
        None => assert_eq!(out.get(REQUEST_ID), Some(&id), "a new id is set"),
    }
}

/// A deadline read from `grpc-timeout` is passed on, rounded up, in a form that
/// reads back.
fn grpc(headers: &HeaderMap) {
    let _ = is_grpc(headers);
    let _ = grpc_status(headers);
    for value in headers.get_all("grpc-timeout") {
        let Some(timeout) = parse_grpc_timeout(value) else {
            continue;
        };
        let passed_on = format_grpc_timeout(timeout);
        let Some(read_back) = parse_grpc_timeout(&passed_on) else {
            panic!("{value:?} ({timeout:?}) is passed on as {passed_on:?}, which does not parse");
        };
        assert!(
            read_back >= timeout,
            "{value:?} ({timeout:?}) is passed on as {passed_on:?}: less time"
        );
    }
}

/// Nothing that belongs to one connection is forwarded, but `te: trailers`.
fn hop_by_hop(headers: &HeaderMap) {
    let mut out = headers.clone();
    fuzzing::strip_hop_by_hop(&mut out);
    for name in [
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(!out.contains_key(name), "{name} is forwarded");
    }
    if let Some(te) = out.get(TE) {
        assert!(
            te.as_bytes().eq_ignore_ascii_case(b"trailers"),
            "te: {te:?} is forwarded"
        );
    }
    // The names every Connection header lists are removed too.
    for listed in headers.get_all(CONNECTION) {
        for name in listed.as_bytes().split(|b| *b == b',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim_ascii()) {
                assert!(
                    !out.contains_key(&name),
                    "{name}, listed in Connection, is forwarded"
                );
            }
        }
    }
}

fn orig_proto(headers: &HeaderMap) {
    for value in headers.get_all(ORIG_PROTO) {
        if let Some(version) = fuzzing::parse_version(value.as_bytes()) {
            assert_eq!(fuzzing::version_name(version).as_bytes(), value.as_bytes());
        }
    }
}

/// The same request always hashes to the same key (a new cookie aside).
fn hash_keys(headers: &HeaderMap) {
    let cookie = |ttl| HashPolicy::Cookie {
        name: "session".to_owned(),
        ttl,
        path: "/".to_owned(),
    };
    let policies = [
        HashPolicy::Header(HeaderName::from_static("x-user")),
        cookie(None),
        cookie(Some(Duration::from_secs(3600))),
    ];
    for policy in &policies {
        let (key, set_cookie) = fuzzing::hash_key(policy, headers);
        if set_cookie.is_some() {
            assert!(key.is_some(), "a new cookie without a key");
        } else {
            assert_eq!(fuzzing::hash_key(policy, headers).0, key);
        }
    }
}
