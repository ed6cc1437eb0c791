//! One watch per kind, feeding the caches. `kube::runtime::watcher` lists,
//! then watches from the list's resourceVersion with bookmarks, resumes from
//! the last one seen after a dropped connection and relists on 410 Gone; a
//! backoff spaces out retries. A relist replaces the kind's cache whole.
//!
//! Failures never clear a cache: the outage is logged once, and its end. A
//! CRD that is not installed (404) is a warning once, the other kinds are
//! served meanwhile, and the watch keeps retrying until it appears.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use tokio::task::JoinHandle;

use super::cache::{Caches, Refusal};
use super::compact::{compact, Compact, ObjectRef};
use super::kinds::Watched;

/// Starts a watch of every kind; they run until aborted.
pub fn spawn_all(client: &kube::Client, caches: &Arc<Caches>) -> Vec<JoinHandle<()>> {
    Watched::ALL
        .into_iter()
        .map(|kind| tokio::spawn(run(client.clone(), kind, Arc::clone(caches))))
        .collect()
}

/// What an error says about the API server's answer (the endpoint watches,
/// `endpoints::watch`, read errors the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The kind is not served (a CRD not installed).
    Missing,
    /// 401/403: the control plane may not read it.
    Refused(u16),
    /// The watch's resourceVersion is too old: the watcher relists.
    Expired,
    /// Anything else: the API server is unreachable or failing.
    Outage,
}

pub(super) fn classify(error: &watcher::Error) -> (Failure, &'static str) {
    let (status, verb) = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => (Some(s.code), "list"),
        watcher::Error::InitialListFailed(_) => (None, "list"),
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => (Some(s.code), "watch"),
        watcher::Error::WatchError(s) => (Some(s.code), "watch"),
        _ => (None, "watch"),
    };
    let failure = match status {
        Some(404) => Failure::Missing,
        Some(code @ (401 | 403)) => Failure::Refused(code),
        Some(410) => Failure::Expired,
        _ => Failure::Outage,
    };
    (failure, verb)
}

async fn run(client: kube::Client, kind: Watched, caches: Arc<Caches>) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.api_resource());
    let events = events_of(api);
    let mut events = std::pin::pin!(events);
    // The objects of a relist under way, swapped in whole at its end.
    let mut listing: Option<BTreeMap<ObjectRef, Compact>> = None;
    let mut failing = false;
    let mut warned_missing = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                let (failure, verb) = classify(&error);
                match failure {
                    Failure::Expired => {
                        tracing::debug!(%kind, "watch expired (410 Gone); relisting")
                    }
                    Failure::Missing => {
                        if !warned_missing {
                            tracing::warn!(%kind, resource = kind.plural(), "not served by the API server (is its CRD installed?); serving the other kinds, retrying");
                            warned_missing = true;
                        }
                        // Nothing to wait for at start: it holds no objects.
                        caches.synced(kind);
                    }
                    Failure::Refused(code) => {
                        tracing::error!(%kind, verb, code, %error, "the API server refuses; check the control plane's RBAC");
                        caches.refused(Refusal {
                            kind,
                            verb,
                            code,
                            message: error.to_string(),
                        });
                    }
                    Failure::Outage => {
                        if !failing {
                            tracing::warn!(%kind, %error, "lost the API server; serving the last config, retrying");
                        }
                        failing = true;
                    }
                }
                continue;
            }
        };
        if failing {
            tracing::info!(%kind, "the API server is back");
            failing = false;
        }
        if warned_missing {
            tracing::info!(%kind, "now served by the API server");
            warned_missing = false;
        }
        match event {
            Event::Init => listing = Some(BTreeMap::new()),
            Event::InitApply(object) => {
                if let Some((at, compact)) = compact(kind, &object) {
                    listing
                        .get_or_insert_with(BTreeMap::new)
                        .insert(at, compact);
                }
            }
            // No relist begun: nothing to replace the kind with (not an empty list).
            Event::InitDone => {
                if let Some(listed) = listing.take() {
                    caches.replace(kind, listed);
                }
            }
            Event::Apply(object) => {
                if let Some((at, compact)) = compact(kind, &object) {
                    caches.apply(kind, at, compact);
                }
            }
            Event::Delete(object) => {
                if let Some((at, _)) = compact(kind, &object) {
                    caches.delete(kind, &at);
                }
            }
        }
    }
}

/// The watch stream: list+watch with bookmarks (the default config), with
/// the default backoff between retries.
fn events_of(
    api: Api<DynamicObject>,
) -> impl futures::Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send {
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        let status = kube::core::Status {
            code,
            ..Default::default()
        };
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn failures_are_told_apart() {
        let list = |code| classify(&watcher::Error::InitialListFailed(api_error(code)));
        assert_eq!(list(404), (Failure::Missing, "list"));
        assert_eq!(list(403), (Failure::Refused(403), "list"));
        assert_eq!(list(500), (Failure::Outage, "list"));
        let expired = kube::core::Status {
            code: 410,
            ..Default::default()
        };
        assert_eq!(
            classify(&watcher::Error::WatchError(Box::new(expired))),
            (Failure::Expired, "watch")
        );
    }
}
