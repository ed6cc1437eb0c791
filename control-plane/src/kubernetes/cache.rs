//! The compact objects of every watched kind, shared by the watches (which
//! write), the source (which turns them into documents) and the status writer.
//!
//! A kind is replaced whole when its watch relists (so objects deleted while
//! a watch was down go away), and is never cleared when the API server is lost:
//! the last config keeps being served (static stability).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::watch;

use super::compact::{Compact, ObjectRef};
use super::kinds::Watched;

/// The objects of each kind.
pub type Kinds = BTreeMap<Watched, BTreeMap<ObjectRef, Compact>>;

/// Why the API server will not let a kind be read (RBAC, authentication):
/// reported by the first load instead of waiting forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Watched,
    /// `list` or `watch`.
    pub verb: &'static str,
    pub code: u16,
    pub message: String,
}

/// How far the watches are: which kinds listed once, and a refusal if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub synced: BTreeSet<Watched>,
    pub refused: Option<Refusal>,
}

impl Progress {
    pub fn all_synced(&self) -> bool {
        Watched::ALL.iter().all(|k| self.synced.contains(k))
    }
}

#[derive(Debug)]
pub struct Caches {
    kinds: Mutex<Kinds>,
    /// Bumped whenever a document changes (not when only a status does: our
    /// own status writes must not reload the config).
    changes: watch::Sender<u64>,
    progress: watch::Sender<Progress>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            kinds: Mutex::new(Kinds::new()),
            changes: watch::Sender::new(0),
            progress: watch::Sender::new(Progress::default()),
        }
    }
}

impl Caches {
    /// Reads every kind under the lock (kept short: no I/O in `f`).
    pub fn read<R>(&self, f: impl FnOnce(&Kinds) -> R) -> R {
        f(&self.kinds.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn write(&self, f: impl FnOnce(&mut Kinds) -> bool) {
        let changed = f(&mut self.kinds.lock().unwrap_or_else(PoisonError::into_inner));
        if changed {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Notices of document changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// An object added or changed.
    pub fn apply(&self, kind: Watched, at: ObjectRef, compact: Compact) {
        self.write(|kinds| {
            let objects = kinds.entry(kind).or_default();
            let changed = objects
                .get(&at)
                .is_none_or(|old| old.object != compact.object);
            if changed {
                not_the_meshs(kind, &at, &compact);
            }
            objects.insert(at, compact);
            changed
        });
    }

    pub fn delete(&self, kind: Watched, at: &ObjectRef) {
        self.write(|kinds| {
            kinds
                .get_mut(&kind)
                .is_some_and(|objects| objects.remove(at).is_some())
        });
    }

    /// Everything of `kind`, after a (re)list: replaces what was held.
    pub fn replace(&self, kind: Watched, objects: BTreeMap<ObjectRef, Compact>) {
        self.write(|kinds| {
            let old = kinds.insert(kind, objects).unwrap_or_default();
            let new = &kinds[&kind];
            for (at, compact) in new {
                if old.get(at).is_none_or(|o| o.object != compact.object) {
                    not_the_meshs(kind, at, compact);
                }
            }
            old.len() != new.len()
                || old
                    .iter()
                    .zip(new.iter())
                    .any(|((a, x), (b, y))| a != b || x.object != y.object)
        });
        self.synced(kind);
    }

    /// `kind` has listed once (or cannot be, as a CRD not installed): the
    /// first load need not wait for it.
    pub fn synced(&self, kind: Watched) {
        self.progress.send_if_modified(|p| p.synced.insert(kind));
    }

    /// The API server refuses to let `kind` be read.
    pub fn refused(&self, refusal: Refusal) {
        self.progress.send_if_modified(|p| {
            let changed = p.refused.as_ref() != Some(&refusal);
            p.refused = Some(refusal);
            changed
        });
    }

    /// The status the API server now has, after we wrote it on the version
    /// `planned_from`, and the object's new resourceVersion (the watch event
    /// that follows says the same): no second write meanwhile, and the next
    /// one is not refused as stale. Nothing is recorded if the watch already
    /// brought a newer object: that one stays.
    pub fn record_status(
        &self,
        kind: Watched,
        at: &ObjectRef,
        planned_from: Option<&str>,
        status: Value,
        resource_version: Option<String>,
    ) {
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(object) = kinds.get_mut(&kind).and_then(|o| o.get_mut(at)) else {
            return;
        };
        if object.resource_version.as_deref() != planned_from {
            return;
        }
        object.status = Some(status);
        if resource_version.is_some() {
            object.resource_version = resource_version;
        }
    }
}

/// Says once per change of the object (not on every reload) that a route is
/// left to its own controller.
fn not_the_meshs(kind: Watched, at: &ObjectRef, compact: &Compact) {
    if !compact.is_mesh {
        tracing::debug!(
            %kind,
            object = %at,
            "no Service among its parentRefs: not the mesh's, left to its controller"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(spec: Value, status: Option<Value>) -> Compact {
        Compact::new(json!({ "spec": spec }), None, status)
    }

    fn at(name: &str) -> ObjectRef {
        ObjectRef {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    #[test]
    fn only_document_changes_are_noticed() {
        let caches = Caches::default();
        let rx = caches.changes();
        caches.apply(Watched::HttpRoute, at("r"), object(json!(1), None));
        assert!(rx.has_changed().unwrap());
        let mut rx = caches.changes();
        rx.borrow_and_update();
        caches.apply(
            Watched::HttpRoute,
            at("r"),
            object(json!(1), Some(json!([]))),
        );
        assert!(!rx.has_changed().unwrap(), "a status change alone");
        caches.delete(Watched::HttpRoute, &at("r"));
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn a_relist_replaces_the_kind_and_marks_it_synced() {
        let caches = Caches::default();
        caches.apply(Watched::Service, at("gone"), object(json!(1), None));
        let mut rx = caches.changes();
        rx.borrow_and_update();
        let mut listed = BTreeMap::new();
        listed.insert(at("kept"), object(json!(2), None));
        caches.replace(Watched::Service, listed.clone());
        assert!(rx.has_changed().unwrap());
        let names: Vec<String> = caches.read(|k| {
            k[&Watched::Service]
                .keys()
                .map(|a| a.name.clone())
                .collect()
        });
        assert_eq!(names, ["kept"]);
        assert!(caches
            .progress()
            .borrow()
            .synced
            .contains(&Watched::Service));

        rx.borrow_and_update();
        caches.replace(Watched::Service, listed);
        assert!(!rx.has_changed().unwrap(), "the same list again");
    }

    #[test]
    fn our_write_is_recorded_unless_the_watch_brought_a_newer_object() {
        let caches = Caches::default();
        let mut planned = object(json!(1), None);
        planned.resource_version = Some("5".into());
        caches.apply(Watched::HttpRoute, at("r"), planned);
        // Before our write (planned from 5, answered 6) is recorded, the
        // watch brings it and someone else's after it (7): 7 stays.
        let mut newer = object(json!(1), Some(json!(["theirs", "ours"])));
        newer.resource_version = Some("7".into());
        caches.apply(Watched::HttpRoute, at("r"), newer.clone());
        caches.record_status(
            Watched::HttpRoute,
            &at("r"),
            Some("5"),
            json!(["ours"]),
            Some("6".into()),
        );
        let held = caches.read(|k| k[&Watched::HttpRoute][&at("r")].clone());
        assert_eq!(held, newer);

        // Planned from what is held: recorded, with the new version.
        caches.record_status(
            Watched::HttpRoute,
            &at("r"),
            Some("7"),
            json!(["theirs", "ours again"]),
            Some("8".into()),
        );
        let held = caches.read(|k| k[&Watched::HttpRoute][&at("r")].clone());
        assert_eq!(held.status, Some(json!(["theirs", "ours again"])));
        assert_eq!(held.resource_version.as_deref(), Some("8"));
    }
}
