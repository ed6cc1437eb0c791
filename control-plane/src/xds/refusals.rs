//! What the control plane refused, and why: counted by reason, the latest few
//! kept with their message, so an operator sees an impostor at once
//! (`/api/v1/refusals`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// How many refusals are kept with their message.
const KEPT: usize = 32;

/// Why a gRPC call on the xDS port was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No client certificate where one is required.
    NoCertificate,
    /// Declared metadata (identity, namespace) that the certificate contradicts.
    IdentityMismatch,
    /// Endpoint authority: the proxy may not serve the Service it names.
    EndpointAuthority,
    /// A telemetry report from someone other than the node it names.
    Telemetry,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoCertificate => "no_certificate",
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::EndpointAuthority => "endpoint_authority",
            Reason::Telemetry => "telemetry",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Refused {
    pub at: SystemTime,
    pub reason: Reason,
    pub remote: Option<SocketAddr>,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Refusals {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    counts: BTreeMap<Reason, u64>,
    latest: VecDeque<Refused>,
}

impl Refusals {
    pub fn record(&self, reason: Reason, remote: Option<SocketAddr>, message: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        *inner.counts.entry(reason).or_default() += 1;
        if inner.latest.len() == KEPT {
            inner.latest.pop_front();
        }
        inner.latest.push_back(Refused {
            at: SystemTime::now(),
            reason,
            remote,
            message: message.to_owned(),
        });
    }

    /// Counts by reason, and the latest refusals, oldest first.
    pub fn snapshot(&self) -> (BTreeMap<Reason, u64>, Vec<Refused>) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (inner.counts.clone(), inner.latest.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_refusal_and_keeps_the_latest() {
        let r = Refusals::default();
        for i in 0..40 {
            r.record(Reason::EndpointAuthority, None, &format!("refusal {i}"));
        }
        r.record(Reason::Telemetry, None, "forged");
        let (counts, latest) = r.snapshot();
        assert_eq!(counts[&Reason::EndpointAuthority], 40);
        assert_eq!(counts[&Reason::Telemetry], 1);
        assert_eq!(latest.len(), KEPT);
        assert_eq!(latest.last().unwrap().message, "forged");
    }
}
