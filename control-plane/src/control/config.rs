//! Keeping the config in force up to date. One task owns the source: it reloads
//! it after every change and makes the API's writes, one at a time, so a reload
//! never runs in the middle of a write, and a write's answer names the snapshot
//! generation that holds it. The source's own notice of a write (the files it
//! wrote) reloads the same documents again, which publishes nothing new.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::api::writes::{Answer, WriteError, WriteRequest};
use crate::escape::escape_control;
use crate::problem::Problem;
use crate::resources::{Kind, ObjectKey};
use crate::signal::stopped;
use crate::source::{Change, Loaded, ResourceId, Source, Staged};
use crate::store::{Documents, Store};
use crate::validate::{self, Outcome};
use crate::xds::{publish_config, Snapshot};
use crate::Chain;

/// Validates what was loaded with `previous` in force, off the async threads.
/// Fails only if validation panicked.
async fn validated(
    loaded: Loaded,
    previous: Arc<Store>,
) -> Result<(Loaded, Outcome), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let outcome = validate::validate_after(&loaded, &previous);
        (loaded, outcome)
    })
    .await
}

/// The first load: what the source holds, validated with nothing in force, on
/// a new snapshot channel. Fails when the source cannot be read at all.
pub async fn first_load(source: &dyn Source) -> Result<watch::Sender<Snapshot>, crate::Error> {
    let loaded = source.load().await?;
    let (tx, _) = watch::channel(Snapshot::default());
    match validated(loaded, Arc::default()).await {
        Ok((loaded, outcome)) => {
            publish(&tx, &loaded, outcome);
            report(source, &tx);
        }
        Err(error) => tracing::error!(%error, "validation failed; starting with no config"),
    }
    Ok(tx)
}

/// Reads the source and publishes what it holds; if it cannot be read, the
/// config in force is kept.
pub async fn reload(source: &dyn Source, tx: &watch::Sender<Snapshot>) {
    match source.load().await {
        Ok(loaded) => {
            let previous = Arc::clone(&tx.borrow().store);
            match validated(loaded, previous).await {
                Ok((loaded, outcome)) => {
                    publish(tx, &loaded, outcome);
                    report(source, tx);
                }
                Err(error) => {
                    tracing::error!(%error, "validation failed; keeping the config in force")
                }
            }
        }
        Err(error) => {
            let error = Chain(&error);
            tracing::warn!(source = %source.describe(), %error, "cannot read the config source; keeping the config in force");
        }
    }
}

/// Tells the source the problems of what it holds and what is in force (the
/// Kubernetes source writes them back as status).
fn report(source: &dyn Source, tx: &watch::Sender<Snapshot>) {
    let (problems, store) = {
        let snapshot = tx.borrow();
        (Arc::clone(&snapshot.problems), Arc::clone(&snapshot.store))
    };
    source.report(problems, store);
}

/// Publishes `outcome` (validated from `loaded`); logs its problems when they
/// differ from the last ones.
pub fn publish(tx: &watch::Sender<Snapshot>, loaded: &Loaded, mut outcome: Outcome) {
    let previous = tx.borrow().store.clone();
    let fresh: BTreeSet<(Kind, ObjectKey)> = outcome
        .store
        .ids()
        .into_iter()
        .map(|(kind, key)| (kind, key.clone()))
        .collect();
    validate::retain_last_good(&previous, &mut outcome);
    let documents = documents(&outcome.store, &fresh, loaded, &previous);
    outcome.store = std::mem::take(&mut outcome.store).with_documents(documents);
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

/// The document each resource in force was read from: for one validated from
/// `loaded` (in `fresh`), the first document defining it in the file it is in
/// force from; for one whose last valid version was kept, that version's.
fn documents(
    store: &Store,
    fresh: &BTreeSet<(Kind, ObjectKey)>,
    loaded: &Loaded,
    previous: &Store,
) -> Documents {
    let mut first: BTreeMap<(ResourceId, &str), &serde_yaml_ng::Value> = BTreeMap::new();
    for d in &loaded.documents {
        if let Some(id) = ResourceId::of(&d.value) {
            first.entry((id, d.file.as_str())).or_insert(&d.value);
        }
    }
    let mut out = Documents::new();
    for (kind, key) in store.ids() {
        let kept = previous.document(kind, key);
        let document = if fresh.contains(&(kind, key.clone())) {
            let id = ResourceId::new(kind, key.clone());
            store
                .origin(kind, key)
                .and_then(|file| first.get(&(id, file)))
                .map(|value| match kept {
                    // The same document as before: share it.
                    Some(old) if **old == **value => Arc::clone(old),
                    _ => Arc::new((*value).clone()),
                })
        } else {
            kept.cloned()
        };
        if let Some(document) = document {
            out.insert((kind, key.clone()), document);
        }
    }
    out
}

/// Until `shutdown`: reloads the source after every change and makes every
/// write that `requests` brings.
pub async fn run(
    source: Arc<dyn Source>,
    tx: watch::Sender<Snapshot>,
    mut requests: mpsc::Receiver<WriteRequest>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The source's notices go through a channel so that none is lost while a
    // write is being made (a notice waited for in `select!` would be dropped
    // half-debounced).
    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    let notices = {
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            loop {
                source.changed().await;
                // Full: a reload is already due, which will see this change too.
                if let Err(mpsc::error::TrySendError::Closed(())) = changed_tx.try_send(()) {
                    return;
                }
            }
        })
    };
    loop {
        tokio::select! {
            Some(()) = changed.recv() => reload(source.as_ref(), &tx).await,
            Some(request) = requests.recv() => {
                let answer = write(source.as_ref(), &tx, request.change, request.dry_run).await;
                let _ = request.reply.send(answer);
            }
            _ = stopped(&mut shutdown) => break,
        }
    }
    notices.abort();
}

/// Makes one write: stage it, validate what the source would then hold, and
/// either refuse it with every problem it brings (nothing written) or write it
/// and publish the result.
pub async fn write(
    source: &dyn Source,
    tx: &watch::Sender<Snapshot>,
    change: Change,
    dry_run: bool,
) -> Result<Answer, WriteError> {
    let held = source.load().await?;
    let in_force = Arc::clone(&tx.borrow().store);
    let staged = source
        .stage(held.clone(), Arc::clone(&in_force), change)
        .await?;
    let failed = |e: tokio::task::JoinError| WriteError::Validation(e.to_string());
    let (_, before) = validated(held, Arc::clone(&in_force))
        .await
        .map_err(failed)?;
    let (loaded_after, after) = validated(staged.loaded.clone(), in_force)
        .await
        .map_err(failed)?;
    let problems = refusals(&staged, &before.problems, &after.problems);
    let generation = || tx.borrow().generation;
    if !problems.is_empty() || dry_run || staged.writes.is_empty() {
        return Ok(Answer {
            dry_run,
            generation: generation(),
            results: staged.results,
            problems,
        });
    }
    let results = staged.results.clone();
    source.commit(staged).await?;
    for r in &results {
        tracing::info!(
            kind = r.id.kind.as_str(),
            namespace = %escape_control(&r.id.key.namespace),
            name = %escape_control(&r.id.key.name),
            action = r.action.as_str(),
            location = %escape_control(&r.location),
            "written through the API"
        );
    }
    // What was written is what was validated: published as it is, without
    // reading the source again (the watcher's notice of our own files then
    // publishes nothing new).
    publish(tx, &loaded_after, after);
    Ok(Answer {
        dry_run,
        generation: generation(),
        results,
        problems,
    })
}

/// The problems that refuse a staged change, as the client knows them: the
/// source's own, every problem with an incoming document, and every other
/// problem the change brings (e.g. a route whose Service it deletes).
fn refusals(staged: &Staged, before: &[Problem], after: &[Problem]) -> Vec<Problem> {
    let mut out = staged.problems.clone();
    for p in after {
        if staged.placement_of(p).is_some() || !before.contains(p) {
            out.push(staged.as_client_sees(p.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests;
