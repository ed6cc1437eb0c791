//! `GET /api/v1/status`: every connected proxy and whether it holds the config
//! in force. A proxy is `current` when it has ACKed the last version sent of
//! every type it subscribed to and its stream has computed them from the latest
//! snapshot generation; it is `nacking` when it rejected the last version sent
//! of a type. Each proxy's `problems` say, in words, what needs attention
//! (behind, NACK, a certificate running out): `remora status` exits non-zero
//! when any proxy has one, or a warning.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::time::rfc3339;
use super::views::{NackView, ProxyView};
use crate::identity::IssuedCertificates;
use crate::translate::ResourceType;
use crate::xds::{ProxyStatus, Snapshot, TypeStatus};

#[derive(Debug, Serialize)]
pub struct StatusView {
    /// The latest snapshot generation: what `current` is measured against.
    pub generation: u64,
    /// Problems in the config in force (see `/api/v1/config`).
    pub config_errors: usize,
    pub proxies: Vec<ProxyStatusView>,
}

#[derive(Debug, Serialize)]
pub struct ProxyStatusView {
    #[serde(flatten)]
    pub proxy: ProxyView,
    /// The snapshot generation its stream last computed every type from.
    pub generation: u64,
    pub current: bool,
    pub nacking: bool,
    /// By label (CDS, EDS, LDS, RDS): only the types it subscribed to.
    pub xds: BTreeMap<&'static str, XdsView>,
    /// The newest certificate issued to its identity since the control plane
    /// started.
    pub certificate: Option<CertificateView>,
    /// What needs attention, in words.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct XdsView {
    pub acked_version: Option<String>,
    pub sent_version: Option<String>,
    /// It ACKed the last version sent (or nothing was sent).
    pub in_sync: bool,
    /// Set while it rejects the last version sent.
    pub nack: Option<NackView>,
}

#[derive(Debug, Serialize)]
pub struct CertificateView {
    /// RFC 3339, UTC.
    pub not_after: String,
    /// Negative once expired.
    pub expires_in_seconds: i64,
    /// In the last fifth of its lifetime: renewal has been failing.
    pub running_out: bool,
}

/// The label operators know a type by.
pub fn label(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Cluster => "CDS",
        ResourceType::Endpoint => "EDS",
        ResourceType::Listener => "LDS",
        ResourceType::Route => "RDS",
    }
}

fn in_sync(s: &TypeStatus) -> bool {
    s.sent_version.is_none() || s.acked_version == s.sent_version
}

/// Rejecting the last version sent.
fn nacked(s: &TypeStatus) -> bool {
    s.last_nack
        .as_ref()
        .is_some_and(|n| Some(&n.version) == s.sent_version.as_ref())
}

pub fn status(
    snapshot: &Snapshot,
    proxies: &[ProxyStatus],
    certificates: &IssuedCertificates,
    now: SystemTime,
) -> StatusView {
    StatusView {
        generation: snapshot.generation,
        config_errors: snapshot.problems.len(),
        proxies: proxies
            .iter()
            .map(|p| proxy(p, snapshot.generation, certificates, now))
            .collect(),
    }
}

fn proxy(
    p: &ProxyStatus,
    latest: u64,
    certificates: &IssuedCertificates,
    now: SystemTime,
) -> ProxyStatusView {
    let mut problems = Vec::new();
    let mut xds = BTreeMap::new();
    for (t, s) in &p.types {
        let nack = s
            .last_nack
            .as_ref()
            .filter(|_| nacked(s))
            .map(NackView::from);
        if let Some(n) = &nack {
            problems.push(format!("{} NACK: {}", label(*t), n.message));
        } else if !in_sync(s) {
            problems.push(format!(
                "{} behind: version {} sent, not ACKed yet",
                label(*t),
                s.sent_version.as_deref().unwrap_or("-")
            ));
        }
        xds.insert(
            label(*t),
            XdsView {
                acked_version: s.acked_version.clone(),
                sent_version: s.sent_version.clone(),
                in_sync: in_sync(s),
                nack,
            },
        );
    }
    if p.generation < latest {
        problems.push(format!(
            "behind: computed from generation {}, the latest is {latest}",
            p.generation
        ));
    }
    let certificate = p
        .identity
        .identity
        .as_deref()
        .and_then(|id| certificates.latest(id))
        .map(|c| {
            let expires_in_seconds = match c.not_after.duration_since(now) {
                Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
            };
            CertificateView {
                not_after: rfc3339(c.not_after),
                expires_in_seconds,
                running_out: c.is_running_out(now),
            }
        });
    if let Some(c) = certificate.as_ref().filter(|c| c.running_out) {
        problems.push(format!(
            "certificate runs out at {} and has not been renewed",
            c.not_after
        ));
    }
    let nacking = p.types.values().any(nacked);
    let current = p.generation >= latest && p.types.values().all(in_sync);
    ProxyStatusView {
        proxy: ProxyView::from(p),
        generation: p.generation,
        current,
        nacking,
        xds,
        certificate,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::Issued;
    use crate::xds::{Nack, ProxyIdentity};

    /// A type, and the versions sent, ACKed and NACKed.
    type Versions<'a> = (
        ResourceType,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn proxy_status(types: &[Versions<'_>], generation: u64) -> ProxyStatus {
        let mut identity = ProxyIdentity::from_node(None);
        identity.node_id = "web-1".into();
        identity.identity = Some("spiffe://cluster.local/ns/default/sa/web".into());
        ProxyStatus {
            identity,
            connected_since: SystemTime::UNIX_EPOCH,
            types: types
                .iter()
                .map(|(t, sent, acked, nack)| {
                    let s = TypeStatus {
                        sent_version: sent.map(str::to_owned),
                        acked_version: acked.map(str::to_owned),
                        last_nack: nack.map(|v| Nack {
                            version: v.into(),
                            nonce: "n".into(),
                            message: "bad cluster".into(),
                        }),
                    };
                    (*t, s)
                })
                .collect(),
            generation,
            draining: false,
            warnings: Vec::new(),
        }
    }

    fn snapshot(generation: u64) -> Snapshot {
        Snapshot {
            generation,
            ..Default::default()
        }
    }

    #[test]
    fn current_means_everything_acked_from_the_latest_generation() {
        let certificates = IssuedCertificates::default();
        let now = SystemTime::now();
        let synced = proxy_status(&[(ResourceType::Cluster, Some("a"), Some("a"), None)], 5);
        let view = status(
            &snapshot(5),
            std::slice::from_ref(&synced),
            &certificates,
            now,
        );
        let p = &view.proxies[0];
        assert!(p.current && !p.nacking, "{:?}", p.problems);
        assert!(p.problems.is_empty());
        assert_eq!(p.xds["CDS"].acked_version.as_deref(), Some("a"));

        let view = status(&snapshot(6), &[synced], &certificates, now);
        assert!(
            !view.proxies[0].current,
            "computed from an older generation"
        );

        let behind = proxy_status(&[(ResourceType::Listener, Some("b"), Some("a"), None)], 5);
        let view = status(&snapshot(5), &[behind], &certificates, now);
        assert!(!view.proxies[0].current);
        assert!(
            view.proxies[0].problems[0].starts_with("LDS behind"),
            "{:?}",
            view.proxies[0].problems
        );
    }

    #[test]
    fn a_nack_of_the_last_version_sent_is_nacking_and_an_older_one_is_not() {
        let certificates = IssuedCertificates::default();
        let now = SystemTime::now();
        let nacking = proxy_status(
            &[(ResourceType::Cluster, Some("b"), Some("a"), Some("b"))],
            5,
        );
        let view = status(&snapshot(5), &[nacking], &certificates, now);
        let p = &view.proxies[0];
        assert!(p.nacking && !p.current);
        assert_eq!(
            p.xds["CDS"].nack.as_ref().map(|n| n.message.as_str()),
            Some("bad cluster")
        );
        assert_eq!(p.problems, ["CDS NACK: bad cluster"]);

        let moved_on = proxy_status(
            &[(ResourceType::Cluster, Some("c"), Some("a"), Some("b"))],
            5,
        );
        let view = status(&snapshot(5), &[moved_on], &certificates, now);
        assert!(
            !view.proxies[0].nacking,
            "it has not answered the new version yet"
        );
    }

    #[test]
    fn a_certificate_running_out_is_a_problem() {
        let certificates = IssuedCertificates::default();
        let now = SystemTime::now();
        certificates.record(
            "spiffe://cluster.local/ns/default/sa/web",
            Issued {
                not_before: now - Duration::from_secs(95),
                not_after: now + Duration::from_secs(5),
            },
        );
        let p = proxy_status(&[], 1);
        let view = status(&snapshot(1), &[p], &certificates, now);
        let p = &view.proxies[0];
        let cert = p.certificate.as_ref().unwrap();
        assert!(cert.running_out);
        assert!((4..=5).contains(&cert.expires_in_seconds));
        assert!(
            p.problems[0].contains("has not been renewed"),
            "{:?}",
            p.problems
        );
    }
}
