//! The JSON bodies of the HTTP API.

use std::collections::BTreeMap;

use serde::Serialize;

use super::time::rfc3339;
use crate::problem::Problem;
use crate::xds::{Nack, ProxyStatus, Refusals, Snapshot, TypeStatus};

/// An element of `GET /api/v1/proxies`.
#[derive(Debug, Serialize)]
pub struct ProxyView {
    pub node_id: String,
    pub service: Option<String>,
    pub namespace: String,
    pub inbound_address: Option<String>,
    /// The SPIFFE id its xDS client certificate proves.
    pub identity: Option<String>,
    /// `mtls` or `plaintext`: how its xDS stream is carried.
    pub transport: &'static str,
    /// Set for proxies served without a client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
    /// What an operator should know, e.g. that the Service it names is not
    /// defined (so it gets no traffic). Empty when all is well.
    pub warnings: Vec<String>,
    /// It said it is leaving (SIGTERM or `POST /shutdown`): no endpoint any
    /// more, finishing what is in flight.
    pub draining: bool,
    /// RFC 3339, UTC.
    pub connected_since: String,
    /// By type URL; only the types the proxy asked for.
    pub types: BTreeMap<&'static str, TypeView>,
}

#[derive(Debug, Serialize)]
pub struct TypeView {
    pub acked_version: Option<String>,
    pub sent_version: Option<String>,
    pub last_nack: Option<NackView>,
}

#[derive(Debug, Serialize)]
pub struct NackView {
    pub version: String,
    pub nonce: String,
    pub message: String,
}

/// `GET /api/v1/config`
#[derive(Debug, Serialize)]
pub struct ConfigView<'a> {
    /// How many resources of each kind are in force.
    pub resources: BTreeMap<&'static str, usize>,
    pub errors: &'a [Problem],
    /// How many times the config directory was read (at start, then after each
    /// change).
    pub loads: u64,
}

impl From<&ProxyStatus> for ProxyView {
    fn from(p: &ProxyStatus) -> Self {
        ProxyView {
            node_id: p.identity.node_id.clone(),
            service: p.identity.service.clone(),
            namespace: p.identity.namespace.clone(),
            inbound_address: p.identity.inbound_address.map(|a| a.to_string()),
            identity: p.identity.identity.clone(),
            transport: p.identity.transport,
            warning: p.identity.identity.is_none().then_some(
                "no client certificate: served only because the control plane runs with --allow-plaintext-proxies",
            ),
            warnings: p.warnings.clone(),
            draining: p.draining,
            connected_since: rfc3339(p.connected_since),
            types: p
                .types
                .iter()
                .map(|(t, s)| (t.type_url(), TypeView::from(s)))
                .collect(),
        }
    }
}

impl From<&TypeStatus> for TypeView {
    fn from(s: &TypeStatus) -> Self {
        TypeView {
            acked_version: s.acked_version.clone(),
            sent_version: s.sent_version.clone(),
            last_nack: s.last_nack.as_ref().map(NackView::from),
        }
    }
}

impl From<&Nack> for NackView {
    fn from(n: &Nack) -> Self {
        NackView {
            version: n.version.clone(),
            nonce: n.nonce.clone(),
            message: n.message.clone(),
        }
    }
}

impl<'a> From<&'a Snapshot> for ConfigView<'a> {
    fn from(s: &'a Snapshot) -> Self {
        ConfigView {
            resources: s
                .store
                .counts()
                .into_iter()
                .map(|(kind, n)| (kind.as_str(), n))
                .collect(),
            errors: &s.problems,
            loads: s.loads,
        }
    }
}

/// `GET /api/v1/refusals`: what the xDS port refused, by reason, and the latest.
#[derive(Debug, Serialize)]
pub struct RefusalsView {
    pub counts: BTreeMap<&'static str, u64>,
    pub latest: Vec<RefusedView>,
}

#[derive(Debug, Serialize)]
pub struct RefusedView {
    pub at: String,
    pub reason: &'static str,
    pub remote: Option<String>,
    pub message: String,
}

impl From<&Refusals> for RefusalsView {
    fn from(r: &Refusals) -> Self {
        let (counts, latest) = r.snapshot();
        RefusalsView {
            counts: counts.into_iter().map(|(k, v)| (k.as_str(), v)).collect(),
            latest: latest
                .into_iter()
                .map(|r| RefusedView {
                    at: rfc3339(r.at),
                    reason: r.reason.as_str(),
                    remote: r.remote.map(|a| a.to_string()),
                    message: r.message,
                })
                .collect(),
        }
    }
}
