//! Writes status back after each validation, in a task of its own: config
//! serving never waits for it. Each round plans the writes from the latest
//! problems and the cached statuses ([`super::status::plan`]).
//!
//! A round with a failed write (the API server down, or 409 Conflict because
//! someone wrote the object after the version we planned from) is followed by
//! another after a backoff (doubling from [`FIRST_RETRY`] to [`LAST_RETRY`]),
//! or sooner if new problems come: each round plans again from the caches,
//! which the watches keep up to date (a 409's newer object included). A
//! failure is logged, not a 409: that is the API server's way of telling us
//! to read again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cache::Caches;
use super::status::{plan, StatusWrite};
use crate::problem::Problem;
use crate::Chain;

/// The wait after a first failed round...
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// ...doubling after each failed round up to this.
pub const LAST_RETRY: Duration = Duration::from_secs(30);

/// What became of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written; the object's new resourceVersion.
    Written(Option<String>),
    /// 409: the object changed since it was planned from.
    Conflict,
    /// Anything else (logged where it happened).
    Failed,
}

/// Runs until `problems`' sender is dropped; each new value is a round.
pub fn spawn(
    client: kube::Client,
    caches: Arc<Caches>,
    problems: watch::Receiver<Option<Arc<[Problem]>>>,
) -> JoinHandle<()> {
    tokio::spawn(run(caches, problems, move |w| {
        let client = client.clone();
        async move { patch(client, w).await }
    }))
}

/// The rounds, with `write` doing each write (the API server, or a test's).
pub async fn run<F, Fut>(
    caches: Arc<Caches>,
    mut problems: watch::Receiver<Option<Arc<[Problem]>>>,
    mut write: F,
) where
    F: FnMut(StatusWrite) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut latest: Option<Arc<[Problem]>> = None;
    // Set after a round with a failure: when to plan again unasked.
    let mut retry: Option<Duration> = None;
    loop {
        let changed = match retry {
            None => problems.changed().await,
            Some(delay) => tokio::select! {
                changed = problems.changed() => changed,
                () = tokio::time::sleep(delay) => Ok(()),
            },
        };
        if changed.is_err() {
            return;
        }
        if let Some(new) = problems.borrow_and_update().clone() {
            latest = Some(new);
        }
        let Some(current) = latest.clone() else {
            continue;
        };
        let now = now();
        let writes = caches.read(|kinds| plan(kinds, &current, &now));
        let mut failed = 0usize;
        for w in writes {
            let (kind, at) = (w.kind, w.at.clone());
            let (planned_from, status) = (w.planned_from.clone(), w.status.clone());
            match write(w).await {
                Outcome::Written(version) => {
                    caches.record_status(kind, &at, planned_from.as_deref(), status, version);
                }
                Outcome::Conflict | Outcome::Failed => failed += 1,
            }
        }
        retry = match (failed, retry) {
            (0, _) => None,
            (_, None) => Some(FIRST_RETRY),
            (_, Some(last)) => Some((last * 2).min(LAST_RETRY)),
        };
        if let Some(delay) = retry {
            tracing::debug!(failed, ?delay, "status writes failed; planning again after");
        }
    }
}

/// One merge patch of the status subresource.
async fn patch(client: kube::Client, w: StatusWrite) -> Outcome {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &w.at.namespace, &w.kind.api_resource());
    match api
        .patch_status(&w.at.name, &PatchParams::default(), &Patch::Merge(&w.patch))
        .await
    {
        Ok(object) => {
            tracing::debug!(kind = %w.kind, object = %w.at, "status written");
            Outcome::Written(object.metadata.resource_version)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!(
                kind = %w.kind,
                object = %w.at,
                "status not written: the object changed since; planning again from the new one"
            );
            Outcome::Conflict
        }
        Err(error) => {
            tracing::warn!(
                kind = %w.kind,
                object = %w.at,
                error = %Chain(&error),
                "cannot write status; trying again after a backoff"
            );
            Outcome::Failed
        }
    }
}

/// A Kubernetes `Time`: RFC 3339 in UTC to the second.
fn now() -> String {
    use k8s_openapi::jiff::Timestamp;
    // Through `SystemTime`: jiff's own clock needs a feature k8s-openapi does
    // not turn on.
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Timestamp::from_second(seconds)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests;
