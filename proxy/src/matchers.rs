//! Request matchers shared by routes, authorization rules and faults: the bottom
//! layer, so every layer above can name them.

use http::{HeaderName, HeaderValue};

#[derive(Debug)]
pub enum PathMatch {
    /// A string prefix (Envoy `prefix`).
    Prefix(String),
    /// A prefix that ends at a `/` boundary (Envoy `path_separated_prefix`).
    SegmentPrefix(String),
    Exact(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::SegmentPrefix(p) => {
                path.starts_with(p.as_str())
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
        }
    }
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: HeaderValueMatch,
    pub invert: bool,
}

#[derive(Debug)]
pub enum HeaderValueMatch {
    Exact(HeaderValue),
    Prefix(String),
    Present,
}

impl HeaderMatch {
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        let found = headers
            .get_all(&self.name)
            .iter()
            .any(|v| match &self.value {
                HeaderValueMatch::Exact(expected) => v == expected,
                HeaderValueMatch::Prefix(p) => v.as_bytes().starts_with(p.as_bytes()),
                HeaderValueMatch::Present => true,
            });
        found != self.invert
    }
}
