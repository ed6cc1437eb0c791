//! A cluster as one snapshot sees it: immutable, pointing at long-lived endpoints.

use std::sync::Arc;

use super::Endpoint;

/// The protocol a cluster's unmeshed endpoints speak (meshed ones always get HTTP/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct WeightedEndpoint {
    pub endpoint: Arc<Endpoint>,
    pub weight: u32,
}

#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub endpoints: Vec<WeightedEndpoint>,
}
