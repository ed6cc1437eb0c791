//! The file source: a directory of YAML files, watched for changes, written one
//! document at a time (see `stage`) with atomic renames (see `write`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{stage, write, Change, DirWatcher, Loaded, Source, Staged};
use crate::store::Store;
use crate::Error;

/// `*.yaml` / `*.yml` files directly in one directory.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    watcher: DirWatcher,
}

impl DirSource {
    /// Opens `dir`, which must exist, and starts watching it (before anything is
    /// read, so a change made while loading is not missed).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let read_err = |source| Error::ReadConfig {
            path: dir.to_owned(),
            source,
        };
        if !std::fs::metadata(dir).map_err(read_err)?.is_dir() {
            let kind = std::io::ErrorKind::NotADirectory;
            return Err(read_err(std::io::Error::new(kind, "not a directory")));
        }
        Ok(DirSource {
            dir: dir.to_owned(),
            watcher: DirWatcher::new(dir)?,
        })
    }
}

/// Runs file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    dir: PathBuf,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::ReadConfig {
            path: dir,
            source: std::io::Error::other(e),
        })?
}

impl Source for DirSource {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn load(&self) -> BoxFuture<'_, Result<Loaded, Error>> {
        let dir = self.dir.clone();
        Box::pin(blocking(self.dir.clone(), move || super::load(&dir)))
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.watcher.changed())
    }

    fn stage(
        &self,
        held: Loaded,
        in_force: Arc<Store>,
        change: Change,
    ) -> BoxFuture<'static, Result<Staged, Error>> {
        let dir = self.dir.clone();
        Box::pin(blocking(self.dir.clone(), move || {
            stage::stage(&dir, &held, &in_force, &change)
        }))
    }

    fn commit(&self, staged: Staged) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(blocking(self.dir.clone(), move || {
            write::commit(&staged.writes)
        }))
    }
}
