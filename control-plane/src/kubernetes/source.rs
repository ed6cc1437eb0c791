//! [`KubeSource`]: the cluster as a [`Source`]. Documents come from the
//! watches' caches; writes are refused (resources in a cluster are changed
//! with kubectl, and their history is the API server's); each validation's
//! problems are written back as status by a task of its own.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use super::cache::{Caches, Progress};
use super::client::KubeError;
use super::documents::{documents_of, picked};
use super::target_ports::Warned;
use super::{watch as watches, writer};
use crate::problem::Problem;
use crate::source::{Change, Loaded, Source, Staged};
use crate::store::Store;
use crate::Error;

/// A burst of changes (a `kubectl apply` of many objects) is one reload: it
/// is over once nothing changed for this long...
const DEBOUNCE: Duration = Duration::from_millis(50);
/// ...or after this many rounds, so a steady stream of changes still reloads.
const DEBOUNCE_ROUNDS: usize = 20;

#[derive(Debug)]
pub struct KubeSource {
    caches: Arc<Caches>,
    /// Notices of document changes since the last [`Source::changed`].
    changes: Mutex<watch::Receiver<u64>>,
    /// The latest problems, for the status writer.
    reports: watch::Sender<Option<Arc<[Problem]>>>,
    /// Named target ports already told unresolved (once per change, not per
    /// reload).
    unresolved: Warned,
    /// The watches and the status writer, stopped with the source.
    tasks: Vec<JoinHandle<()>>,
}

impl KubeSource {
    /// Starts the watches and returns once every kind has been listed once
    /// (a mesh served before would push an empty config), or fails when the
    /// API server refuses to let a kind be read.
    pub async fn start(client: kube::Client) -> Result<KubeSource, KubeError> {
        let caches = Arc::new(Caches::default());
        let mut changes = caches.changes();
        let mut progress = caches.progress();
        let mut tasks = watches::spawn_all(&client, &caches);
        let (reports, problems) = watch::channel(None);
        tasks.push(writer::spawn(client, Arc::clone(&caches), problems));
        let source = KubeSource {
            caches,
            changes: Mutex::new(changes.clone()),
            reports,
            unresolved: Warned::default(),
            tasks,
        };
        tracing::info!("waiting for the first list of every watched kind");
        let outcome = progress
            .wait_for(|p| p.refused.is_some() || p.all_synced())
            .await
            .map(|p| p.clone());
        match outcome {
            Ok(Progress {
                refused: Some(r), ..
            }) => Err(KubeError::Refused {
                kind: r.kind.kind(),
                resource: r.kind.plural(),
                verb: r.verb,
                code: r.code,
                message: r.message,
            }),
            // The caches live as long as `source`: the sender cannot be gone.
            Ok(_) | Err(_) => {
                // What the first load reads already holds these changes.
                changes.borrow_and_update();
                *source.changes.lock().await = changes;
                Ok(source)
            }
        }
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn read_only() -> Error {
    Error::ReadOnly("the Kubernetes source".to_owned())
}

impl Source for KubeSource {
    fn describe(&self) -> String {
        "the Kubernetes API server".to_owned()
    }

    fn load(&self) -> BoxFuture<'_, Result<Loaded, Error>> {
        Box::pin(async move {
            // Only `Arc`s are cloned under the lock the watches need.
            let picked = self.caches.read(picked);
            Ok(documents_of(picked, &self.unresolved))
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut rx = self.changes.lock().await;
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
            for _ in 0..DEBOUNCE_ROUNDS {
                tokio::time::sleep(DEBOUNCE).await;
                if !rx.has_changed().unwrap_or(false) {
                    break;
                }
                rx.borrow_and_update();
            }
        })
    }

    fn stage(
        &self,
        _held: Loaded,
        _in_force: Arc<Store>,
        _change: Change,
    ) -> BoxFuture<'static, Result<Staged, Error>> {
        Box::pin(async { Err(read_only()) })
    }

    fn commit(&self, _staged: Staged) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Err(read_only()) })
    }

    fn report(&self, problems: Arc<[Problem]>, _in_force: Arc<Store>) {
        self.reports.send_replace(Some(problems));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::compact::{Compact, ObjectRef};
    use crate::kubernetes::kinds::Watched;

    fn source() -> KubeSource {
        let caches = Arc::new(Caches::default());
        let changes = Mutex::new(caches.changes());
        KubeSource {
            caches,
            changes,
            reports: watch::channel(None).0,
            unresolved: Warned::default(),
            tasks: Vec::new(),
        }
    }

    fn service(name: &str) -> (ObjectRef, Compact) {
        let at = ObjectRef {
            namespace: "shop".into(),
            name: name.into(),
        };
        let object = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"}, "spec": {"ports": [{"port": 80}]}});
        (at, Compact::new(object, None, None))
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_one_notice() {
        let source = source();
        for name in ["a", "b", "c"] {
            let (at, compact) = service(name);
            source.caches.apply(Watched::Service, at, compact);
        }
        source.changed().await;
        let again = tokio::time::timeout(Duration::from_secs(1), source.changed()).await;
        assert!(again.is_err(), "nothing changed since");
        let loaded = source.load().await.unwrap();
        assert_eq!(loaded.documents.len(), 3);
    }

    #[tokio::test]
    async fn writes_are_refused_with_the_kubectl_message() {
        let source = source();
        let err = source
            .stage(
                Loaded::default(),
                Arc::default(),
                Change::Delete(Vec::new()),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("kubectl"), "{err}");
    }
}
