//! What Remora writes back as status, computed from the problems of the last
//! validation (pure). HTTPRoutes get `status.parents[]` (one entry per
//! parentRef that is a Service, `Accepted` and `ResolvedRefs`; a Gateway's
//! parent is its controller's); Remora's own kinds get `status.conditions`
//! (`Accepted`). A message is what `remora check` prints for the problem,
//! without the file (the object is the file here).
//!
//! A status is written only when it differs from what the object has, and a
//! condition's `lastTransitionTime` is kept while its status stays the same:
//! so our own write, seen again by the watch, writes nothing more. A merge
//! patch replaces the whole `parents` array, other controllers' entries
//! included: the patch names the resourceVersion it was planned from, so the
//! API server refuses it (409) if someone wrote meanwhile, and the writer
//! plans again from the newer object.
//!
//! The API's limits are kept: a condition's message is at most
//! [`MAX_MESSAGE`] bytes, `parents` at most [`MAX_PARENTS`] entries.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::cache::Kinds;
use super::compact::{service_parents, Compact, ObjectRef};
use super::documents::location;
use super::kinds::{Watched, CONTROLLER_NAME};
use crate::problem::Problem;

/// `maxLength` of a condition's `message` (metav1.Condition).
pub const MAX_MESSAGE: usize = 32_768;
/// `maxItems` of an HTTPRoute's `status.parents`.
pub const MAX_PARENTS: usize = 32;

/// One status write: a merge patch for the status subresource, and the part
/// of the status it sets (to remember once written).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub kind: Watched,
    pub at: ObjectRef,
    /// The object's resourceVersion the write was planned from (also in the
    /// patch, as its precondition).
    pub planned_from: Option<String>,
    pub patch: Value,
    pub status: Value,
}

/// The status writes that bring every object's status in line with `problems`.
pub fn plan(kinds: &Kinds, problems: &[Problem], now: &str) -> Vec<StatusWrite> {
    // Grouped once: objects x problems string comparisons would grow with
    // the product of the two.
    let mut by_file: HashMap<&str, Vec<&Problem>> = HashMap::new();
    for problem in problems {
        by_file
            .entry(problem.file.as_str())
            .or_default()
            .push(problem);
    }
    let mut writes = Vec::new();
    for kind in Watched::ALL.into_iter().filter(|k| k.has_status()) {
        for (at, object) in kinds.get(&kind).into_iter().flatten() {
            let file = location(kind, at);
            let mine = by_file.get(file.as_str()).map_or(&[][..], Vec::as_slice);
            let (status, mut patch) = if kind == Watched::HttpRoute {
                let parents = route_parents(object, mine, now);
                (parents.clone(), json!({ "status": { "parents": parents } }))
            } else {
                let conditions = accepted_conditions(object, mine, now);
                (
                    conditions.clone(),
                    json!({ "status": { "conditions": conditions } }),
                )
            };
            let unchanged = match &object.status {
                Some(old) => *old == status,
                None => status.as_array().is_some_and(Vec::is_empty),
            };
            if unchanged {
                continue;
            }
            if let Some(version) = &object.resource_version {
                patch["metadata"] = json!({ "resourceVersion": version });
            }
            writes.push(StatusWrite {
                kind,
                at: at.clone(),
                planned_from: object.resource_version.clone(),
                patch,
                status,
            });
        }
    }
    writes
}

/// `remora check`'s text for a problem, without the file part.
pub fn message(problem: &Problem) -> String {
    let shown = Problem {
        file: String::new(),
        line: None,
        column: None,
        document: None,
        ..problem.clone()
    }
    .to_string();
    match shown.strip_prefix(": ") {
        Some(rest) => rest.to_owned(),
        None => shown,
    }
}

fn joined(problems: &[&Problem]) -> String {
    problems
        .iter()
        .map(|p| message(p))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A problem about a backend reference (rather than the route itself).
fn is_reference(problem: &Problem) -> bool {
    problem
        .field
        .as_deref()
        .is_some_and(|f| f.contains("backendRefs"))
}

/// Whether `problem` concerns parentRef `i`: a problem on another parentRef
/// does not, anything else does.
fn concerns_parent(problem: &Problem, i: usize) -> bool {
    match problem.field.as_deref() {
        Some(f) if f.starts_with("spec.parentRefs[") => {
            f.starts_with(&format!("spec.parentRefs[{i}]"))
        }
        _ => true,
    }
}

/// `problem` as the object numbers its parentRefs: the mesh validated a
/// document holding only the Service parents, at `services` in the object.
fn renumbered(problem: &Problem, services: &[usize]) -> Problem {
    let field = problem.field.as_deref().and_then(|field| {
        let rest = field.strip_prefix("spec.parentRefs[")?;
        let (j, tail) = rest.split_once(']')?;
        let i = services.get(j.parse::<usize>().ok()?)?;
        Some(format!("spec.parentRefs[{i}]{tail}"))
    });
    let mut problem = problem.clone();
    if field.is_some() {
        problem.field = field;
    }
    problem
}

/// `status.parents` of a route: other controllers' entries as they are, then
/// ours, one per parentRef that is a Service, [`MAX_PARENTS`] in all at most.
/// A route with no Service parent gets none of ours (and loses any left from
/// before).
pub fn route_parents(route: &Compact, problems: &[&Problem], now: &str) -> Value {
    let old: Vec<Value> = route
        .status
        .as_ref()
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is_mine = |entry: &Value| entry["controllerName"].as_str() == Some(CONTROLLER_NAME);
    let mut parents: Vec<Value> = old.iter().filter(|e| !is_mine(e)).cloned().collect();
    let refs = route.object["spec"]["parentRefs"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let services = service_parents(&route.object);
    let room = MAX_PARENTS.saturating_sub(parents.len());
    // `j` numbers the Service parents as the validated document does.
    for (j, &i) in services.iter().enumerate().take(room) {
        let Some(parent) = refs.get(i) else {
            continue;
        };
        let concerned: Vec<Problem> = problems
            .iter()
            .filter(|p| concerns_parent(p, j))
            .map(|p| renumbered(p, &services))
            .collect();
        let (references, invalid): (Vec<&Problem>, Vec<&Problem>) =
            concerned.iter().partition(|p| is_reference(p));
        let previous = old
            .iter()
            .find(|e| is_mine(e) && e["parentRef"] == *parent)
            .map(|e| &e["conditions"]);
        let accepted = if invalid.is_empty() {
            (true, "Accepted", String::new())
        } else {
            (false, "Invalid", joined(&invalid))
        };
        let resolved = if references.is_empty() {
            (true, "ResolvedRefs", String::new())
        } else {
            (false, "BackendNotFound", joined(&references))
        };
        let conditions = vec![
            condition("Accepted", accepted, route.generation, previous, now),
            condition("ResolvedRefs", resolved, route.generation, previous, now),
        ];
        parents.push(json!({
            "parentRef": parent,
            "controllerName": CONTROLLER_NAME,
            "conditions": conditions,
        }));
    }
    Value::Array(parents)
}

/// `status.conditions` of one of Remora's kinds: `Accepted`, and any other
/// condition type someone else wrote, kept.
pub fn accepted_conditions(object: &Compact, problems: &[&Problem], now: &str) -> Value {
    let old = object.status.clone().unwrap_or(Value::Array(Vec::new()));
    let accepted = if problems.is_empty() {
        (true, "Accepted", String::new())
    } else {
        (false, "Invalid", joined(problems))
    };
    let mut conditions: Vec<Value> = old
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"].as_str() != Some("Accepted"))
        .cloned()
        .collect();
    conditions.push(condition(
        "Accepted",
        accepted,
        object.generation,
        Some(&old),
        now,
    ));
    Value::Array(conditions)
}

/// One condition; its `lastTransitionTime` is the previous one's when the
/// status did not change.
fn condition(
    kind: &str,
    (ok, reason, message): (bool, &str, String),
    generation: Option<i64>,
    previous: Option<&Value>,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let message = truncated(message);
    let since = previous
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"].as_str() == Some(kind) && c["status"].as_str() == Some(status))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now);
    let mut c = json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    });
    if let Some(generation) = generation {
        c["observedGeneration"] = json!(generation);
    }
    c
}

/// `message` cut to [`MAX_MESSAGE`] bytes (so as many characters at most),
/// on a character boundary, an ellipsis saying it was cut.
pub fn truncated(mut message: String) -> String {
    const ELLIPSIS: char = '…';
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE - ELLIPSIS.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push(ELLIPSIS);
    message
}

#[cfg(test)]
mod tests;
