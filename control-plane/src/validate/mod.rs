//! Documents in, a [`Store`] of valid resources and every problem out. Pure: no I/O,
//! no clock, the same documents always give the same result.
//!
//! A resource with any problem is left out; the others are kept, whatever file
//! they are in.
//!
//! When the same resource (kind, namespace, name) is written more than once, one
//! definition is kept and each other one is a "duplicate" problem naming the file
//! of the one kept:
//! 1. the definition in the file the resource was in force from (the previous
//!    load), the first in that file if it is there twice: a new file cannot take
//!    over a resource already accepted, whatever its name;
//! 2. while that file has a document that cannot be read or does not say which
//!    resource it is, none: the resource may still be in that document, and its
//!    last valid version stays in force (`retain`);
//! 3. otherwise (the first load, or that file no longer defines it) the first in
//!    file-name, then document order.

mod cluster_ip;
mod decode;
mod document;
mod httproute;
mod names;
mod policy;
mod refs;
mod retain;
mod route_filters;
mod service;
mod traffic;

use std::collections::{BTreeMap, BTreeSet};

use crate::problem::Problem;
use crate::resources::{Kind, ObjectKey, PolicyTarget};
use crate::source::{Document, Loaded};
use crate::store::{Contents, Store};
use document::{Candidate, Decoded};
pub use retain::retain_last_good;

/// The result of validating a set of documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub store: Store,
    pub problems: Vec<Problem>,
}

/// Validates what was loaded, as a first load (nothing in force before); the
/// loader's problems (unreadable files, YAML syntax, limits) come first for each
/// file.
pub fn validate_loaded(loaded: &Loaded) -> Outcome {
    validate_after(loaded, &Store::default())
}

/// Validates what was loaded when `previous` is in force: a resource written
/// twice stays where it was in force (see the module doc).
pub fn validate_after(loaded: &Loaded, previous: &Store) -> Outcome {
    let mut outcome = validate_with(&loaded.documents, &loaded.problems, previous);
    let mut problems = loaded.problems.clone();
    problems.append(&mut outcome.problems);
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    outcome.problems = problems;
    outcome
}

pub fn validate(documents: &[Document]) -> Outcome {
    validate_with(documents, &[], &Store::default())
}

/// `loader_problems` are only read to know which files hide documents; the
/// problems returned are those found here.
fn validate_with(documents: &[Document], loader_problems: &[Problem], previous: &Store) -> Outcome {
    let mut problems = Vec::new();
    let mut candidates = Vec::new();
    for doc in documents {
        match document::decode(doc) {
            Ok(candidate) => candidates.push(candidate),
            Err(problem) => problems.push(*problem),
        }
    }
    // Files with a document that cannot be read or does not say what it is.
    let hiding: BTreeSet<String> = loader_problems
        .iter()
        .chain(&problems)
        .filter(|p| p.hides_resources())
        .map(|p| p.file.clone())
        .chain(
            candidates
                .iter()
                .filter(|c| c.key.is_none())
                .map(|c| c.subject.file.clone()),
        )
        .collect();
    reject_duplicates(&mut candidates, previous, &hiding);
    cluster_ip::reject_shared_cluster_ips(&mut candidates, previous, &hiding);
    check_references(&mut candidates);

    check_policy_targets(&mut candidates);
    reject_conflicting_mesh_tls(&mut candidates);
    reject_conflicting_traffic(&mut candidates);

    let mut contents = Contents::default();
    for candidate in candidates {
        problems.extend(candidate.problems());
        if !candidate.errors.is_empty() {
            continue;
        }
        if let (Some(key), Some(_)) = (&candidate.key, &candidate.resource) {
            let file = candidate.subject.file.clone();
            contents.origins.insert((candidate.kind, key.clone()), file);
        }
        match candidate.resource {
            Some(Decoded::Service(s)) => contents.services.push(s),
            Some(Decoded::Route(r)) => contents.routes.push(r),
            Some(Decoded::MeshTls(p)) => contents.mesh_tls.push(p),
            Some(Decoded::Authorization(p)) => contents.authorizations.push(p),
            Some(Decoded::Traffic(p)) => contents.traffic.push(*p),
            None => {}
        }
    }
    problems.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    Outcome {
        store: Store::from_contents(contents),
        problems,
    }
}

/// Keeps one definition of each resource and rejects the others, by the rule in
/// the module doc. `hiding`: the files with a document that may define anything.
fn reject_duplicates(candidates: &mut [Candidate], previous: &Store, hiding: &BTreeSet<String>) {
    let mut definitions: BTreeMap<(Kind, ObjectKey), Vec<usize>> = BTreeMap::new();
    for (i, candidate) in candidates.iter().enumerate() {
        if let Some(key) = &candidate.key {
            definitions
                .entry((candidate.kind, key.clone()))
                .or_default()
                .push(i);
        }
    }
    for ((kind, key), mut found) in definitions {
        // File name, then document order, whatever order the documents came in.
        found.sort_by(|&a, &b| {
            let (a, b) = (&candidates[a].subject, &candidates[b].subject);
            (&a.file, a.document).cmp(&(&b.file, b.document))
        });
        let in_force_from = previous.origin(kind, &key);
        let kept = match in_force_from {
            Some(file) => match found.iter().find(|&&i| candidates[i].subject.file == file) {
                Some(&i) => Some(i),
                None if hiding.contains(file) => None,
                None => found.first().copied(),
            },
            None => found.first().copied(),
        };
        let message = match (kept, in_force_from) {
            (Some(i), Some(file)) if candidates[i].subject.file == file => format!(
                "duplicate: {kind} {key} is already defined in {}, the definition in force",
                candidates[i].subject.location()
            ),
            (Some(i), _) => format!(
                "duplicate: {kind} {key} is already defined in {}",
                candidates[i].subject.location()
            ),
            (None, file) => format!(
                "duplicate: {kind} {key} is in force from {}, which has a document that \
                 cannot be read (it may still be defined there)",
                file.unwrap_or_default()
            ),
        };
        for i in found {
            if Some(i) != kept {
                candidates[i].reject("metadata.name".into(), message.clone());
            }
        }
    }
}

fn check_references(candidates: &mut [Candidate]) {
    let route_errors: Vec<_> = {
        let services = valid_services(candidates);
        candidates
            .iter()
            .map(|c| match &c.resource {
                Some(Decoded::Route(route)) if c.is_valid() => refs::check_route(route, &services),
                _ => Vec::new(),
            })
            .collect()
    };
    for (candidate, errors) in candidates.iter_mut().zip(route_errors) {
        for e in errors {
            candidate.reject(e.field, e.message);
        }
    }
}

fn valid_services(candidates: &[Candidate]) -> refs::Services<'_> {
    refs::Services {
        valid: candidates
            .iter()
            .filter(|c| c.is_valid())
            .filter_map(|c| match &c.resource {
                Some(Decoded::Service(s)) => Some((&s.key, s)),
                _ => None,
            })
            .collect(),
        declared: candidates
            .iter()
            .filter(|c| c.kind == Kind::Service)
            .filter_map(|c| c.key.as_ref())
            .collect::<BTreeSet<_>>(),
    }
}

/// Runs after the routes' references are checked, so a policy cannot target a
/// route that is itself rejected.
fn check_policy_targets(candidates: &mut [Candidate]) {
    let errors: Vec<_> = {
        let services = valid_services(candidates);
        let routes: refs::Routes<'_> = candidates
            .iter()
            .filter(|c| c.is_valid())
            .filter_map(|c| match &c.resource {
                Some(Decoded::Route(r)) => Some((&r.key, r)),
                _ => None,
            })
            .collect();
        candidates
            .iter()
            .map(|c| match &c.resource {
                Some(Decoded::MeshTls(p)) if c.is_valid() => {
                    refs::check_target(&p.target, &services, &routes)
                }
                Some(Decoded::Authorization(p)) if c.is_valid() => {
                    refs::check_target(&p.target, &services, &routes)
                }
                Some(Decoded::Traffic(p)) if c.is_valid() => {
                    refs::check_target(&p.target, &services, &routes)
                }
                _ => None,
            })
            .collect()
    };
    for (candidate, error) in candidates.iter_mut().zip(errors) {
        if let Some(e) = error {
            candidate.reject(e.field, e.message);
        }
    }
}

/// One MeshTLS per Service and one namespace-wide MeshTLS per namespace: two
/// would leave the mode to chance. The first in namespace/name order is kept.
fn reject_conflicting_mesh_tls(candidates: &mut [Candidate]) {
    reject_second_policy(candidates, "MeshTLS", |d| match d {
        Decoded::MeshTls(p) => Some((&p.key, &p.target)),
        _ => None,
    });
}

/// One TrafficPolicy per target: two would leave the settings to chance.
fn reject_conflicting_traffic(candidates: &mut [Candidate]) {
    reject_second_policy(candidates, "TrafficPolicy", |d| match d {
        Decoded::Traffic(p) => Some((&p.key, &p.target)),
        _ => None,
    });
}

/// Of the valid policies `policy_of` picks out, the first per (namespace,
/// target) in namespace/name order is kept; each later one is rejected, naming
/// the one kept.
fn reject_second_policy(
    candidates: &mut [Candidate],
    kind: &str,
    policy_of: fn(&Decoded) -> Option<(&ObjectKey, &PolicyTarget)>,
) {
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| {
            candidates[i].is_valid()
                && candidates[i]
                    .resource
                    .as_ref()
                    .and_then(policy_of)
                    .is_some()
        })
        .collect();
    order.sort_by(|&a, &b| candidates[a].key.cmp(&candidates[b].key));
    let mut first: BTreeMap<(String, PolicyTarget), ObjectKey> = BTreeMap::new();
    for i in order {
        let Some((key, target)) = candidates[i].resource.as_ref().and_then(policy_of) else {
            continue;
        };
        let id = (key.namespace.clone(), target.clone());
        if let Some(kept) = first.get(&id) {
            let what = match target {
                PolicyTarget::Service(s) => format!("Service \"{}\"", s.name),
                PolicyTarget::HttpRoute(r) => format!("HTTPRoute \"{}\"", r.name),
                PolicyTarget::Namespace => format!("namespace \"{}\"", key.namespace),
            };
            let message = format!("{what} already has a {kind} policy ({kept})");
            candidates[i].reject("spec.targetRef".into(), message);
        } else {
            first.insert(id, key.clone());
        }
    }
}

#[cfg(test)]
mod opaque_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;
