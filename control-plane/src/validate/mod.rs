//! Documents in, a [`Store`] of valid resources and every problem out. Pure: no I/O,
//! no clock, the same documents always give the same result.
//!
//! A resource with any problem is left out; the others are kept, whatever file
//! they are in. When the same resource is written twice, the first one (in file
//! name, then document order) is kept and the later ones are problems.

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

/// Validates what was loaded; the loader's problems (unreadable files, YAML syntax)
/// come first for each file.
pub fn validate_loaded(loaded: &Loaded) -> Outcome {
    let mut outcome = validate(&loaded.documents);
    let mut problems = loaded.problems.clone();
    problems.append(&mut outcome.problems);
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    outcome.problems = problems;
    outcome
}

pub fn validate(documents: &[Document]) -> Outcome {
    let mut problems = Vec::new();
    let mut candidates = Vec::new();
    for doc in documents {
        match document::decode(doc) {
            Ok(candidate) => candidates.push(candidate),
            Err(problem) => problems.push(*problem),
        }
    }
    reject_duplicates(&mut candidates);
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

fn reject_duplicates(candidates: &mut [Candidate]) {
    let mut first: BTreeMap<(Kind, ObjectKey), String> = BTreeMap::new();
    for candidate in candidates.iter_mut() {
        let Some(key) = candidate.key.clone() else {
            continue;
        };
        let id = (candidate.kind, key);
        match first.get(&id) {
            Some(location) => {
                let message = format!(
                    "duplicate: {} {} is already defined in {location}",
                    id.0, id.1
                );
                candidate.reject("metadata.name".into(), message);
            }
            None => {
                first.insert(id, candidate.subject.location());
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
mod policy_tests;
#[cfg(test)]
mod tests;
