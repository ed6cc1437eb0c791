//! Keeping the config in force up to date: load and validate the directory, publish
//! the result, and do it again on every change.

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::escape::escape_control;
use crate::signal::stopped;
use crate::source::{self, DirWatcher};
use crate::store::Store;
use crate::validate::{self, Outcome};
use crate::xds::{publish_config, Snapshot};
use crate::{Chain, Error};

/// Reads and validates every YAML file of `dir`, with `previous` in force (empty
/// at start): a resource defined twice stays in the file it was in force from.
pub fn load(dir: &Path, previous: &Store) -> Result<Outcome, Error> {
    let loaded = source::load(dir)?;
    Ok(validate::validate_after(&loaded, previous))
}

/// Publishes `outcome`; logs its problems when they differ from the last ones.
pub fn publish(tx: &watch::Sender<Snapshot>, mut outcome: Outcome) {
    let previous = tx.borrow().store.clone();
    validate::retain_last_good(&previous, &mut outcome);
    let problems_changed = *tx.borrow().problems != *outcome.problems;
    if problems_changed {
        // Every part comes from a config file: escaped, so that it cannot forge
        // a log line (the message, `Problem`'s Display, escapes itself).
        let e = |part: &Option<String>| {
            let part = part.as_deref().unwrap_or_default();
            escape_control(part).into_owned()
        };
        for p in &outcome.problems {
            tracing::warn!(
                file = %escape_control(&p.file),
                kind = %e(&p.kind),
                namespace = %e(&p.namespace),
                name = %e(&p.name),
                field = %e(&p.field),
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
        let previous = std::sync::Arc::clone(&tx.borrow().store);
        match tokio::task::spawn_blocking(move || load(&path, &previous)).await {
            Ok(Ok(outcome)) => publish(&tx, outcome),
            Ok(Err(error)) => {
                let error = Chain(&error);
                tracing::warn!(%error, "cannot read the config directory; keeping the config in force");
            }
            Err(error) => tracing::error!(%error, "config reload task failed"),
        }
    }
}
