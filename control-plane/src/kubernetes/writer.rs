//! Writes status back after each validation, in a task of its own: config
//! serving never waits for it. Each round plans the writes from the latest
//! problems and the cached statuses ([`super::status::plan`]); a failed write
//! is logged and tried again on the next round (the next change).

use std::sync::Arc;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cache::Caches;
use super::status::{plan, StatusWrite};
use crate::problem::Problem;
use crate::Chain;

/// Runs until `problems`' sender is dropped; each new value is a round.
pub fn spawn(
    client: kube::Client,
    caches: Arc<Caches>,
    mut problems: watch::Receiver<Option<Arc<[Problem]>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while problems.changed().await.is_ok() {
            let Some(latest) = problems.borrow_and_update().clone() else {
                continue;
            };
            let now = now();
            let writes = caches.read(|kinds| plan(kinds, &latest, &now));
            for w in writes {
                write(&client, &caches, w).await;
            }
        }
    })
}

async fn write(client: &kube::Client, caches: &Caches, w: StatusWrite) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &w.at.namespace, &w.kind.api_resource());
    match api
        .patch_status(&w.at.name, &PatchParams::default(), &Patch::Merge(&w.patch))
        .await
    {
        Ok(_) => {
            tracing::debug!(kind = %w.kind, object = %w.at, "status written");
            caches.record_status(w.kind, &w.at, w.status);
        }
        Err(error) => tracing::warn!(
            kind = %w.kind,
            object = %w.at,
            error = %Chain(&error),
            "cannot write status; trying again on the next change"
        ),
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
