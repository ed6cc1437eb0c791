//! Keeping the config in force up to date: load and validate the directory, publish
//! the result, and do it again on every change.

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::signal::stopped;
use crate::source::{self, DirWatcher};
use crate::validate::{self, Outcome};
use crate::xds::{publish_config, Snapshot};
use crate::{Chain, Error};

/// Reads and validates every YAML file of `dir`.
pub fn load(dir: &Path) -> Result<Outcome, Error> {
    let loaded = source::load(dir)?;
    Ok(validate::validate_loaded(&loaded))
}

/// Publishes `outcome`; logs its problems when they differ from the last ones.
pub fn publish(tx: &watch::Sender<Snapshot>, mut outcome: Outcome) {
    let previous = tx.borrow().store.clone();
    validate::retain_last_good(&previous, &mut outcome);
    let problems_changed = *tx.borrow().problems != *outcome.problems;
    if problems_changed {
        for p in &outcome.problems {
            tracing::warn!(
                file = %p.file,
                kind = p.kind.as_deref().unwrap_or(""),
                namespace = p.namespace.as_deref().unwrap_or(""),
                name = p.name.as_deref().unwrap_or(""),
                field = p.field.as_deref().unwrap_or(""),
                "invalid config: {p}"
            );
        }
    }
    let services = outcome.store.services().count();
    let routes = outcome.store.routes().count();
    let errors = outcome.problems.len();
    if publish_config(tx, outcome.store, outcome.problems) {
        tracing::info!(services, httproutes = routes, errors, "config loaded");
    }
}

/// Reloads `dir` after every change until `shutdown`. If the directory itself
/// cannot be read, the config in force is kept.
pub async fn watch(
    dir: PathBuf,
    watcher: DirWatcher,
    tx: watch::Sender<Snapshot>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = watcher.changed() => {}
            _ = stopped(&mut shutdown) => return,
        }
        let path = dir.clone();
        match tokio::task::spawn_blocking(move || load(&path)).await {
            Ok(Ok(outcome)) => publish(&tx, outcome),
            Ok(Err(error)) => {
                let error = Chain(&error);
                tracing::warn!(%error, "cannot read the config directory; keeping the config in force");
            }
            Err(error) => tracing::error!(%error, "config reload task failed"),
        }
    }
}
