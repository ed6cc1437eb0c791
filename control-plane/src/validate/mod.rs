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
mod refs;
mod retain;
mod service;

use std::collections::{BTreeMap, BTreeSet};

use crate::problem::Problem;
use crate::resources::{Kind, ObjectKey};
use crate::source::{Document, Loaded};
use crate::store::Store;
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

    let mut services = Vec::new();
    let mut routes = Vec::new();
    for candidate in candidates {
        problems.extend(candidate.problems());
        match candidate.resource {
            Some(Decoded::Service(s)) if candidate.errors.is_empty() => services.push(s),
            Some(Decoded::Route(r)) if candidate.errors.is_empty() => routes.push(r),
            _ => {}
        }
    }
    problems.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    Outcome {
        store: Store::new(services, routes),
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
        let services = refs::Services {
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
        };
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

#[cfg(test)]
mod tests;
