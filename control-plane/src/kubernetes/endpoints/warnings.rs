//! Telling operators about slice endpoints left out, once per change: the
//! endpoints are recomputed on every pod or slice event, and a pod skipped
//! for the same reason must not be logged again each time.

use std::collections::BTreeSet;

use super::compute::Skipped;

/// The skipped endpoints already told about.
#[derive(Debug, Default)]
pub struct Warnings {
    told: BTreeSet<Skipped>,
}

impl Warnings {
    /// Logs what `skipped` holds that the last call's did not, forgets what it
    /// no longer holds (so a pod skipped again later is told about again), and
    /// returns what was logged.
    pub fn observe(&mut self, skipped: &BTreeSet<Skipped>) -> Vec<Skipped> {
        let new: Vec<Skipped> = skipped.difference(&self.told).cloned().collect();
        for s in &new {
            if s.reason.is_warning() {
                tracing::warn!(service = %s.service, pod = %s.endpoint, reason = %s.reason, "an EndpointSlice endpoint is not a mesh endpoint of its Service");
            } else {
                tracing::debug!(service = %s.service, pod = %s.endpoint, reason = %s.reason, "an EndpointSlice endpoint is not a mesh endpoint of its Service (yet)");
            }
        }
        self.told.clone_from(skipped);
        new
    }
}

#[cfg(test)]
mod tests {
    use super::super::compute::Reason;
    use super::*;
    use crate::resources::ObjectKey;

    fn skipped(pod: &str, reason: Reason) -> Skipped {
        Skipped {
            service: ObjectKey::new("shop", "orders"),
            endpoint: format!("shop/{pod}"),
            reason,
        }
    }

    #[test]
    fn each_skip_is_told_once_until_it_goes_away() {
        let mut w = Warnings::default();
        let a = skipped("a", Reason::NotInjected);
        let b = skipped("b", Reason::NotSelected);
        let once = BTreeSet::from([a.clone()]);
        assert_eq!(w.observe(&once), std::slice::from_ref(&a));
        assert!(w.observe(&once).is_empty(), "recomputed, nothing new");
        let both = BTreeSet::from([a.clone(), b.clone()]);
        assert_eq!(w.observe(&both), std::slice::from_ref(&b));
        // a is fixed, then broken again: told again.
        assert!(w.observe(&BTreeSet::from([b.clone()])).is_empty());
        assert_eq!(w.observe(&both), std::slice::from_ref(&a));
        // The same pod for another reason is another thing to tell.
        let a_moved = skipped("a", Reason::NotSelected);
        assert_eq!(w.observe(&BTreeSet::from([a_moved.clone(), b])), [a_moved]);
    }
}
