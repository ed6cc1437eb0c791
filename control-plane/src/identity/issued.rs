//! The certificates this control plane issued, newest per identity, so that
//! `remora status` can say when each proxy's certificate runs out. Kept in
//! memory: after a restart an identity is known again at its next renewal.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// One issued certificate's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Issued {
    /// Whether it runs out within the last fifth of its lifetime at `now`: a
    /// proxy renews at half its lifetime, so by then renewal has failed more
    /// than once. Expired counts too.
    pub fn is_running_out(&self, now: SystemTime) -> bool {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        match self.not_after.duration_since(now) {
            Ok(left) => left < lifetime / 5,
            Err(_) => true,
        }
    }
}

/// Newest certificate per SPIFFE id. Bounded by the identities tokens grant.
#[derive(Debug, Default)]
pub struct IssuedCertificates {
    by_identity: Mutex<HashMap<String, Issued>>,
}

impl IssuedCertificates {
    pub fn record(&self, identity: &str, issued: Issued) {
        let mut all = self
            .by_identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let newer = all
            .get(identity)
            .is_none_or(|known| known.not_after <= issued.not_after);
        if newer {
            all.insert(identity.to_owned(), issued);
        }
    }

    /// The newest certificate issued for `identity`, if any since start.
    pub fn latest(&self, identity: &str) -> Option<Issued> {
        self.by_identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(identity)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn keeps_the_newest_per_identity() {
        let issued = IssuedCertificates::default();
        let id = "spiffe://cluster.local/ns/default/sa/orders";
        issued.record(
            id,
            Issued {
                not_before: at(0),
                not_after: at(100),
            },
        );
        issued.record(
            id,
            Issued {
                not_before: at(50),
                not_after: at(150),
            },
        );
        issued.record(
            id,
            Issued {
                not_before: at(10),
                not_after: at(110),
            },
        );
        assert_eq!(issued.latest(id).map(|i| i.not_after), Some(at(150)));
        assert_eq!(
            issued.latest("spiffe://cluster.local/ns/default/sa/web"),
            None
        );
    }

    #[test]
    fn runs_out_in_the_last_fifth_of_its_lifetime() {
        let cert = Issued {
            not_before: at(0),
            not_after: at(100),
        };
        assert!(!cert.is_running_out(at(50)));
        assert!(!cert.is_running_out(at(80)));
        assert!(cert.is_running_out(at(81)));
        assert!(cert.is_running_out(at(200)), "expired");
    }
}
