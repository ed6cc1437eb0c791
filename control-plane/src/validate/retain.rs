//! Nothing already accepted is lost to a bad edit: when a resource that was in force
//! becomes invalid, its last valid version stays in force (and its problem says
//! so) until the file is fixed or the resource is deleted.
//!
//! A resource counts as deleted only when the files that are left parse cleanly:
//! while some document cannot be read (a syntax error, a limit) or does not say
//! which resource it is, a resource that disappeared may be in it, so its last
//! version is kept too. A kept version keeps the file it came from.

use std::collections::BTreeSet;

use super::refs;
use super::Outcome;
use crate::escape::escape_control;
use crate::problem::Problem;
use crate::resources::{Kind, ObjectKey};
use crate::store::Store;

const KEPT: &str = "the last valid version stays in force";

/// Carries over from `previous` what `outcome` rejected.
pub fn retain_last_good(previous: &Store, outcome: &mut Outcome) {
    let unreadable = outcome.problems.iter().any(Problem::hides_resources);
    let rejected: BTreeSet<(Kind, ObjectKey)> = outcome
        .problems
        .iter()
        .filter_map(|p| {
            let kind = Kind::from_name(p.kind.as_deref()?)?;
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
    let mut contents = store.contents();
    for old in previous.services() {
        // Not when another Service has taken over its cluster IP since (which
        // `cluster_ip` allows only when this one looked deleted).
        let ip_taken = old
            .cluster_ip
            .is_some_and(|ip| store.services().any(|s| s.cluster_ip == Some(ip)));
        if store.service(&old.key).is_none() && keep(Kind::Service, &old.key) && !ip_taken {
            kept.push((Kind::Service, old.key.clone()));
            contents.services.push(old.clone());
        }
    }
    {
        let lookup = refs::Services {
            valid: contents.services.iter().map(|s| (&s.key, s)).collect(),
            declared: contents.services.iter().map(|s| &s.key).collect(),
        };
        let in_force: BTreeSet<&ObjectKey> = store.routes().map(|r| &r.key).collect();
        for old in previous.routes() {
            // An old route whose Services are gone cannot stay: it would point nowhere.
            if !in_force.contains(&old.key)
                && keep(Kind::HttpRoute, &old.key)
                && refs::check_route(old, &lookup).is_empty()
            {
                kept.push((Kind::HttpRoute, old.key.clone()));
                contents.routes.push(old.clone());
            }
        }
    }
    {
        // Policies stay only while what they target is still in force.
        let services = refs::Services {
            valid: contents.services.iter().map(|s| (&s.key, s)).collect(),
            declared: contents.services.iter().map(|s| &s.key).collect(),
        };
        let routes: refs::Routes<'_> = contents.routes.iter().map(|r| (&r.key, r)).collect();
        let targets_ok = |t| refs::check_target(t, &services, &routes).is_none();
        let tls_in_force: BTreeSet<&ObjectKey> = store.mesh_tls().map(|p| &p.key).collect();
        let mut mesh_tls = Vec::new();
        for old in previous.mesh_tls() {
            // Not when another policy has taken over its target since.
            let target_taken = store
                .mesh_tls()
                .any(|p| p.key.namespace == old.key.namespace && p.target == old.target);
            if !tls_in_force.contains(&old.key)
                && !target_taken
                && keep(Kind::MeshTls, &old.key)
                && targets_ok(&old.target)
            {
                kept.push((Kind::MeshTls, old.key.clone()));
                mesh_tls.push(old.clone());
            }
        }
        let authz_in_force: BTreeSet<&ObjectKey> = store.authorizations().map(|p| &p.key).collect();
        let mut authorizations = Vec::new();
        for old in previous.authorizations() {
            if !authz_in_force.contains(&old.key)
                && keep(Kind::AuthorizationPolicy, &old.key)
                && targets_ok(&old.target)
            {
                kept.push((Kind::AuthorizationPolicy, old.key.clone()));
                authorizations.push(old.clone());
            }
        }
        let traffic_in_force: BTreeSet<&ObjectKey> =
            store.traffic_policies().map(|p| &p.key).collect();
        let mut traffic = Vec::new();
        for old in previous.traffic_policies() {
            let target_taken = store.traffic_policies().any(|p| p.target == old.target);
            if !traffic_in_force.contains(&old.key)
                && !target_taken
                && keep(Kind::TrafficPolicy, &old.key)
                && targets_ok(&old.target)
            {
                kept.push((Kind::TrafficPolicy, old.key.clone()));
                traffic.push(old.clone());
            }
        }
        contents.mesh_tls.extend(mesh_tls);
        contents.authorizations.extend(authorizations);
        contents.traffic.extend(traffic);
    }
    if kept.is_empty() {
        return;
    }
    for (kind, key) in &kept {
        // It stays where it was read from, so a newcomer cannot take it over.
        if let Some(file) = previous.origin(*kind, key) {
            let file = file.to_owned();
            contents.origins.insert((*kind, key.clone()), file);
        }
        tracing::info!(
            kind = kind.as_str(),
            namespace = %escape_control(&key.namespace),
            name = %escape_control(&key.name),
            "keeping the last valid version"
        );
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
    outcome.store = Store::from_contents(contents);
}
