//! How the endpoint watches fare, told to operators once per change: an
//! outage when it begins and when it ends (the watcher retries with backoff
//! meanwhile, and the endpoints in force stay), and a refusal (401/403: the
//! control plane's RBAC lacks a kind) as an error naming the kind, the verb
//! and the fix, since without pods, Services or EndpointSlices there are no
//! endpoints at all. Errors are read as the source's watches read them.

use std::collections::BTreeMap;

use kube::runtime::watcher;

use super::super::watch::{classify, Failure};

/// The watches now failing, by kind, and how.
#[derive(Debug, Default)]
pub struct Health {
    failing: BTreeMap<&'static str, Failure>,
}

impl Health {
    /// The watch of `kind` (`resource`: its plural) failed with `error`.
    /// Returns how, when that is news (it was not failing so already).
    pub fn failed(
        &mut self,
        kind: &'static str,
        resource: &'static str,
        error: &watcher::Error,
    ) -> Option<Failure> {
        let (failure, verb) = classify(error);
        if failure == Failure::Expired {
            // Not a failure: the watcher relists.
            tracing::debug!(kind, "watch expired (410 Gone); relisting");
            return None;
        }
        if self.failing.insert(kind, failure) == Some(failure) {
            return None;
        }
        match failure {
            Failure::Refused(code) => tracing::error!(
                kind,
                verb,
                code,
                %error,
                "the API server refuses to let the control plane {verb} {resource}: no endpoints from the cluster until it may (grant list and watch on {resource} in the control plane's ClusterRole); retrying"
            ),
            Failure::Missing => tracing::error!(
                kind,
                verb,
                %error,
                "the API server does not serve {resource}: no endpoints from the cluster; retrying"
            ),
            Failure::Outage | Failure::Expired => tracing::warn!(
                kind,
                %error,
                "lost the API server; the endpoints in force stay as they are, retrying with backoff"
            ),
        }
        Some(failure)
    }

    /// The watch of `kind` delivered an event: its failure, if any, is over.
    /// Returns whether one was.
    pub fn ok(&mut self, kind: &'static str) -> bool {
        let was = self.failing.remove(kind).is_some();
        if was {
            tracing::info!(kind, "the endpoint watch is back");
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_error(code: u16) -> watcher::Error {
        let status = kube::core::Status {
            code,
            ..Default::default()
        };
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn an_outage_is_told_once_and_its_end_once() {
        let mut h = Health::default();
        assert_eq!(
            h.failed("Pod", "pods", &list_error(500)),
            Some(Failure::Outage)
        );
        assert_eq!(h.failed("Pod", "pods", &list_error(503)), None, "a retry");
        // Another kind fails on its own.
        assert!(h.failed("Service", "services", &list_error(500)).is_some());
        assert!(h.ok("Pod"));
        assert!(!h.ok("Pod"), "told once");
        assert!(h.failed("Pod", "pods", &list_error(500)).is_some(), "again");
    }

    #[test]
    fn a_refusal_is_told_apart_and_an_expiry_is_no_failure() {
        let mut h = Health::default();
        assert_eq!(
            h.failed("Pod", "pods", &list_error(403)),
            Some(Failure::Refused(403))
        );
        assert_eq!(h.failed("Pod", "pods", &list_error(403)), None);
        // From refused to unreachable is news.
        assert_eq!(
            h.failed("Pod", "pods", &list_error(500)),
            Some(Failure::Outage)
        );
        let gone = kube::core::Status {
            code: 410,
            ..Default::default()
        };
        let mut fresh = Health::default();
        assert_eq!(
            fresh.failed("Pod", "pods", &watcher::Error::WatchError(Box::new(gone))),
            None
        );
        assert!(!fresh.ok("Pod"), "nothing was failing");
    }
}
