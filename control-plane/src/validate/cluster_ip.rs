//! One Service per cluster IP: a transparent proxy routes a connection by its
//! original destination, so two Services at one address would leave the choice to
//! chance.
//!
//! Which Service keeps a contested address follows the rule for duplicates (see
//! the module doc of `validate`): the Service that had it in force keeps it as long
//! as it may still be in force with it (its definition still says so, or is
//! invalid or unreadable, so its last valid version stays); otherwise the first in
//! namespace/name order. Every other Service with that address is rejected, naming
//! the one that has it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::document::{Candidate, Decoded};
use crate::resources::{Kind, ObjectKey, Service};
use crate::store::Store;

/// `hiding`: the files with a document that may define anything.
pub fn reject_shared_cluster_ips(
    candidates: &mut [Candidate],
    previous: &Store,
    hiding: &BTreeSet<String>,
) {
    let mut holders: BTreeMap<IpAddr, ObjectKey> = BTreeMap::new();
    for old in previous.services() {
        if let Some(ip) = old.cluster_ip {
            if still_claims(candidates, old, ip, hiding) {
                holders.insert(ip, old.key.clone());
            }
        }
    }
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| service(&candidates[i]).is_some_and(|s| s.cluster_ip.is_some()))
        .collect();
    order.sort_by(|&a, &b| candidates[a].key.cmp(&candidates[b].key));
    for i in order {
        let Some((ip, key)) =
            service(&candidates[i]).and_then(|s| Some((s.cluster_ip?, s.key.clone())))
        else {
            continue;
        };
        let holder = holders.entry(ip).or_insert_with(|| key.clone());
        if *holder != key {
            let message = format!("{ip} is already the clusterIP of Service {holder}");
            candidates[i].reject("spec.clusterIP".into(), message);
        }
    }
}

/// Whether `old`, in force with cluster IP `ip`, will still be in force with it
/// after this load.
fn still_claims(
    candidates: &[Candidate],
    old: &Service,
    ip: IpAddr,
    hiding: &BTreeSet<String>,
) -> bool {
    let mut definitions = candidates
        .iter()
        .filter(|c| c.kind == Kind::Service && c.key.as_ref() == Some(&old.key))
        .peekable();
    if definitions.peek().is_none() {
        // Deleted, unless it may be in a document that cannot be read.
        return !hiding.is_empty();
    }
    let mut valid = definitions.filter_map(service).peekable();
    match valid.peek() {
        Some(new) => new.cluster_ip == Some(ip),
        // Every definition is invalid: the last valid version stays in force.
        None => true,
    }
}

/// The Service a candidate holds, if it is valid so far.
fn service(candidate: &Candidate) -> Option<&Service> {
    match &candidate.resource {
        Some(Decoded::Service(s)) if candidate.is_valid() => Some(s),
        _ => None,
    }
}
