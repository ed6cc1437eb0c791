//! Nothing already accepted is lost to a bad edit: when a resource that was in force
//! becomes invalid, its last valid version stays in force (and its problem says
//! so) until the file is fixed or the resource is deleted.
//!
//! A resource counts as deleted only when the files that are left parse cleanly:
//! while some document cannot be read or does not say which resource it is, a
//! resource that disappeared may be in it, so its last version is kept too.

use std::collections::BTreeSet;

use super::refs;
use super::Outcome;
use crate::resources::{Kind, ObjectKey};
use crate::store::Store;

const KEPT: &str = "the last valid version stays in force";

/// Carries over from `previous` what `outcome` rejected.
pub fn retain_last_good(previous: &Store, outcome: &mut Outcome) {
    let unreadable = outcome.problems.iter().any(|p| p.name.is_none());
    let rejected: BTreeSet<(Kind, ObjectKey)> = outcome
        .problems
        .iter()
        .filter_map(|p| {
            let kind = match p.kind.as_deref()? {
                "Service" => Kind::Service,
                "HTTPRoute" => Kind::HttpRoute,
                _ => return None,
            };
            let key = ObjectKey {
                namespace: p.namespace.clone().unwrap_or_else(|| "default".into()),
                name: p.name.clone()?,
            };
            Some((kind, key))
        })
        .collect();
    let keep = |kind: Kind, key: &ObjectKey| unreadable || rejected.contains(&(kind, key.clone()));

    let store = &outcome.store;
    let mut kept: Vec<(Kind, ObjectKey)> = Vec::new();
    let mut services: Vec<_> = store.services().cloned().collect();
    for old in previous.services() {
        if store.service(&old.key).is_none() && keep(Kind::Service, &old.key) {
            kept.push((Kind::Service, old.key.clone()));
            services.push(old.clone());
        }
    }
    let mut routes: Vec<_> = store.routes().cloned().collect();
    {
        let lookup = refs::Services {
            valid: services.iter().map(|s| (&s.key, s)).collect(),
            declared: services.iter().map(|s| &s.key).collect(),
        };
        let in_force: BTreeSet<&ObjectKey> = store.routes().map(|r| &r.key).collect();
        for old in previous.routes() {
            // An old route whose Services are gone cannot stay: it would point nowhere.
            if !in_force.contains(&old.key)
                && keep(Kind::HttpRoute, &old.key)
                && refs::check_route(old, &lookup).is_empty()
            {
                kept.push((Kind::HttpRoute, old.key.clone()));
                routes.push(old.clone());
            }
        }
    }
    if kept.is_empty() {
        return;
    }
    for (kind, key) in &kept {
        tracing::info!(kind = kind.as_str(), namespace = %key.namespace, name = %key.name, "keeping the last valid version");
    }
    for p in &mut outcome.problems {
        let names_kept = kept.iter().any(|(kind, key)| {
            p.kind.as_deref() == Some(kind.as_str())
                && p.name.as_deref() == Some(key.name.as_str())
                && p.namespace.as_deref().unwrap_or("default") == key.namespace
        });
        if names_kept && !p.message.ends_with(KEPT) {
            p.message = format!("{}; {KEPT}", p.message);
        }
    }
    outcome.store = Store::new(services, routes);
}
