//! What Remora writes back as status, computed from the problems of the last
//! validation (pure). HTTPRoutes get `status.parents[]` (one entry per
//! parentRef, `Accepted` and `ResolvedRefs`); Remora's own kinds get
//! `status.conditions` (`Accepted`). A message is what `remora check` prints
//! for the problem, without the file (the object is the file here).
//!
//! A status is written only when it differs from what the object has, and a
//! condition's `lastTransitionTime` is kept while its status stays the same:
//! so our own write, seen again by the watch, writes nothing more.

use serde_json::{json, Value};

use super::cache::Kinds;
use super::compact::{Compact, ObjectRef};
use super::documents::location;
use super::kinds::{Watched, CONTROLLER_NAME};
use crate::problem::Problem;

/// One status write: a merge patch for the status subresource, and the part
/// of the status it sets (to remember once written).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub kind: Watched,
    pub at: ObjectRef,
    pub patch: Value,
    pub status: Value,
}

/// The status writes that bring every object's status in line with `problems`.
pub fn plan(kinds: &Kinds, problems: &[Problem], now: &str) -> Vec<StatusWrite> {
    let mut writes = Vec::new();
    for kind in Watched::ALL.into_iter().filter(|k| k.has_status()) {
        for (at, object) in kinds.get(&kind).into_iter().flatten() {
            let file = location(kind, at);
            let mine: Vec<&Problem> = problems.iter().filter(|p| p.file == file).collect();
            let (status, patch) = if kind == Watched::HttpRoute {
                let parents = route_parents(object, &mine, now);
                (parents.clone(), json!({ "status": { "parents": parents } }))
            } else {
                let conditions = accepted_conditions(object, &mine, now);
                (
                    conditions.clone(),
                    json!({ "status": { "conditions": conditions } }),
                )
            };
            let unchanged = match &object.status {
                Some(old) => *old == status,
                None => status.as_array().is_some_and(Vec::is_empty),
            };
            if !unchanged {
                writes.push(StatusWrite {
                    kind,
                    at: at.clone(),
                    patch,
                    status,
                });
            }
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

/// `status.parents` of a route: other controllers' entries as they are, then
/// ours, one per parentRef.
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
        .cloned()
        .unwrap_or_default();
    for (i, parent) in refs.iter().enumerate() {
        let concerned: Vec<&Problem> = problems
            .iter()
            .copied()
            .filter(|p| concerns_parent(p, i))
            .collect();
        let (references, invalid): (Vec<&Problem>, Vec<&Problem>) =
            concerned.into_iter().partition(|p| is_reference(p));
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

#[cfg(test)]
mod tests;
