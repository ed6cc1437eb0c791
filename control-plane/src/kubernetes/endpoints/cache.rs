//! The facts of one kind of object, kept current from a watch: changes one by
//! one, and a relist (after a restart, or a 410 Gone) replacing the whole kind
//! at once when it is complete, so a half-listed kind is never computed from.
//! A watch that fails keeps what it has: a lost API server leaves the
//! endpoints as they were (static stability).

use std::collections::BTreeMap;

use crate::resources::ObjectKey;

/// One change of a watched kind, as facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// A relist begins.
    Init,
    /// An object of the relist.
    InitApply(ObjectKey, T),
    /// The relist is complete: it replaces everything known of the kind.
    InitDone,
    /// An object added or changed.
    Apply(ObjectKey, T),
    /// An object deleted.
    Delete(ObjectKey),
}

/// The facts of every object of one kind.
#[derive(Debug)]
pub struct KindCache<T> {
    live: BTreeMap<ObjectKey, T>,
    /// A relist under way.
    relist: Option<BTreeMap<ObjectKey, T>>,
    /// A first relist completed: the kind is known.
    listed: bool,
}

impl<T> Default for KindCache<T> {
    fn default() -> Self {
        KindCache {
            live: BTreeMap::new(),
            relist: None,
            listed: false,
        }
    }
}

impl<T: PartialEq> KindCache<T> {
    /// Applies `change`; returns whether what is known changed (the first
    /// complete list always counts as a change).
    pub fn apply(&mut self, change: Change<T>) -> bool {
        match change {
            Change::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Change::InitApply(key, facts) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, facts);
                false
            }
            Change::InitDone => {
                // A completion with no relist begun replaces nothing: taking
                // it for an empty list would wipe the kind.
                let Some(fresh) = self.relist.take() else {
                    return false;
                };
                let first = !std::mem::replace(&mut self.listed, true);
                let changed = first || fresh != self.live;
                self.live = fresh;
                changed
            }
            Change::Apply(key, facts) => {
                if self.live.get(&key) == Some(&facts) {
                    return false;
                }
                self.live.insert(key, facts);
                true
            }
            Change::Delete(key) => self.live.remove(&key).is_some(),
        }
    }

    /// Everything known, by namespace and name.
    pub fn live(&self) -> &BTreeMap<ObjectKey, T> {
        &self.live
    }

    /// Whether a complete list has been seen.
    pub fn listed(&self) -> bool {
        self.listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    #[test]
    fn changes_apply_one_by_one_and_report_whether_anything_changed() {
        let mut c = KindCache::<u32>::default();
        assert!(c.apply(Change::Apply(k("a"), 1)));
        assert!(!c.apply(Change::Apply(k("a"), 1)), "the same facts again");
        assert!(c.apply(Change::Apply(k("a"), 2)));
        assert!(c.apply(Change::Delete(k("a"))));
        assert!(!c.apply(Change::Delete(k("a"))), "already gone");
        assert!(c.live().is_empty());
    }

    #[test]
    fn a_relist_replaces_the_kind_at_once_when_complete() {
        let mut c = KindCache::<u32>::default();
        assert!(!c.listed());
        c.apply(Change::Init);
        c.apply(Change::InitApply(k("a"), 1));
        c.apply(Change::InitApply(k("b"), 1));
        assert!(c.live().is_empty(), "nothing until the list is complete");
        assert!(c.apply(Change::InitDone), "the first list is a change");
        assert!(c.listed());
        assert_eq!(c.live().len(), 2);

        // A relist (after a 410 Gone) missing b: b was deleted meanwhile.
        assert!(!c.apply(Change::Init));
        assert!(!c.apply(Change::InitApply(k("a"), 1)));
        assert_eq!(c.live().len(), 2, "the old set stays until it is done");
        assert!(c.apply(Change::InitDone));
        assert_eq!(c.live().keys().collect::<Vec<_>>(), [&k("a")]);

        // A relist that finds what is known: no change.
        c.apply(Change::Init);
        c.apply(Change::InitApply(k("a"), 1));
        assert!(!c.apply(Change::InitDone));
    }

    #[test]
    fn a_completion_without_a_relist_wipes_nothing() {
        let mut c = KindCache::<u32>::default();
        c.apply(Change::Init);
        c.apply(Change::InitApply(k("a"), 1));
        c.apply(Change::InitDone);
        assert!(!c.apply(Change::InitDone), "nothing was staged");
        assert_eq!(c.live().len(), 1);
        // An empty relist that did begin is a real "nothing left".
        c.apply(Change::Init);
        assert!(c.apply(Change::InitDone));
        assert!(c.live().is_empty());
    }
}
