//! Watching a directory for changes (inotify on Linux; no polling), debounced so an
//! editor's burst of writes becomes one reload.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Error;

/// How long the directory must be quiet before a change is reported.
const QUIET: Duration = Duration::from_millis(200);
/// A change is reported at most this long after it happened, even if writes go on.
const MAX_DELAY: Duration = Duration::from_millis(800);

/// Watches one directory (not its subdirectories). Dropping it stops the watch.
pub struct DirWatcher {
    _watcher: RecommendedWatcher,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher").finish_non_exhaustive()
    }
}

impl DirWatcher {
    pub fn new(dir: &Path) -> Result<Self, Error> {
        let changed = Arc::new(Notify::new());
        let signal = Arc::clone(&changed);
        let watch_err = |source| Error::Watch {
            path: dir.to_owned(),
            source,
        };
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            match event {
                Ok(event) if !is_change(&event.kind) => {}
                Ok(event) => {
                    tracing::debug!(paths = ?event.paths, kind = ?event.kind, "config directory changed");
                    signal.notify_one();
                }
                Err(error) => {
                    // Events may have been lost (e.g. queue overflow): reload to be sure.
                    tracing::warn!(%error, "config directory watch error");
                    signal.notify_one();
                }
            }
        })
        .map_err(watch_err)?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(watch_err)?;
        Ok(DirWatcher {
            _watcher: watcher,
            changed,
        })
    }

    /// Resolves after the directory changed and then stayed quiet for a moment.
    /// A change made before this is called is not lost.
    pub async fn changed(&self) {
        self.changed.notified().await;
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let quiet_until = (Instant::now() + QUIET).min(deadline);
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep_until(quiet_until) => return,
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }
}

/// Reading a file (ours included) is not a change; everything else may be.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_a_write_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let watcher = DirWatcher::new(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
        tokio::time::timeout(Duration::from_secs(1), watcher.changed())
            .await
            .expect("a write is reported within a second");
    }

    #[tokio::test]
    async fn reading_files_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
        let watcher = DirWatcher::new(dir.path()).unwrap();
        std::fs::read_to_string(dir.path().join("a.yaml")).unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(400), watcher.changed()).await;
        assert!(
            waited.is_err(),
            "reading a file must not look like a change"
        );
    }
}
