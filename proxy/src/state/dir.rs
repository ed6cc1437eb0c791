//! The state directory: made private (0700) when missing, refused when another
//! user could write it, and written one whole file at a time.
//!
//! A write goes to a temporary file in the same directory, is flushed to disk,
//! renamed over the old file and the directory is flushed too: a reader (or a
//! proxy started after a crash or a power cut) sees the old file or the new one,
//! never a part of either. On a tmpfs the flushes cost nothing.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the state directory cannot be used; the proxy refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state_dir {path}: cannot create it: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state_dir {path}: cannot read its metadata: {source}")]
    Metadata {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state_dir {path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "state_dir {path}: other users can write it (mode {mode:o}); give a folder only \
         this user can write (the proxy creates a missing one with mode 700)"
    )]
    OthersCanWrite { path: PathBuf, mode: u32 },
    #[error(
        "state_dir {path}: owned by uid {owner}, not by this proxy's uid {uid}; give a \
         folder of this user's (the proxy creates a missing one with mode 700)"
    )]
    Owner { path: PathBuf, owner: u32, uid: u32 },
}

/// A checked state directory. One proxy per directory: two proxies sharing one
/// would overwrite each other's files.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens `path`, creating it (and its missing parents) with mode 0700. A
    /// folder other users can write is refused: they could plant a config or a
    /// certificate this proxy would serve with.
    pub fn open(path: &Path) -> Result<Arc<StateDir>, StateError> {
        let metadata = |path: &Path| {
            std::fs::metadata(path).map_err(|source| StateError::Metadata {
                path: path.to_owned(),
                source,
            })
        };
        if !path.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|source| StateError::Create {
                    path: path.to_owned(),
                    source,
                })?;
            tracing::info!(path = %path.display(), "created the state dir");
        }
        let meta = metadata(path)?;
        if !meta.is_dir() {
            return Err(StateError::NotADirectory {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(StateError::OthersCanWrite {
                path: path.to_owned(),
                mode,
            });
        }
        if let Some(uid) = process_uid() {
            if meta.uid() != uid {
                return Err(StateError::Owner {
                    path: path.to_owned(),
                    owner: meta.uid(),
                    uid,
                });
            }
        }
        Ok(Arc::new(StateDir {
            path: path.to_owned(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the file `name` in this directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Replaces the file `name` with `bytes`, atomically, readable and writable
    /// by this user alone (`mode`, e.g. 0o600).
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        let target = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        // A temporary file left by a crash is stale: start from nothing, so the
        // new one is created with `mode` and no other process holds it open.
        if let Err(e) = std::fs::remove_file(&tmp) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e);
            }
        }
        let written = self.write_then_rename(&tmp, &target, bytes, mode);
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn write_then_rename(
        &self,
        tmp: &Path,
        target: &Path,
        bytes: &[u8],
        mode: u32,
    ) -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(tmp)?;
        // The mode given at creation passes through the umask; say it again.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(tmp, target)?;
        // The rename is an entry in the directory: flush it too, or a power cut
        // may bring back the old file (or none).
        File::open(&self.path)?.sync_all()
    }

    /// The whole file `name`, or `None` when there is none.
    pub fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.file(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// This process's effective uid, read without `unsafe` from the owner of
/// `/proc/self`; `None` where there is no /proc (the owner check is then skipped;
/// the mode check still applies).
fn process_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_missing_dir_is_created_private() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/state");
        let dir = StateDir::open(&path).unwrap();
        assert_eq!(dir.path(), path);
        assert_eq!(mode(&path), 0o700);
        // Opening it again finds it as it was.
        StateDir::open(&path).unwrap();
    }

    #[test]
    fn a_dir_other_users_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        std::fs::create_dir(&path).unwrap();
        for loose in [0o777, 0o770, 0o1777, 0o702] {
            std::fs::set_permissions(&path, Permissions::from_mode(loose)).unwrap();
            let err = StateDir::open(&path).unwrap_err();
            assert!(
                matches!(err, StateError::OthersCanWrite { .. }),
                "{loose:o}: {err}"
            );
            assert!(
                err.to_string().contains("other users can write it"),
                "{err}"
            );
        }
        // Readable by others is their business: only writing matters here.
        std::fs::set_permissions(&path, Permissions::from_mode(0o755)).unwrap();
        StateDir::open(&path).unwrap();
    }

    #[test]
    fn a_file_is_not_a_state_dir() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("file");
        std::fs::write(&path, "x").unwrap();
        let err = StateDir::open(&path).unwrap_err();
        assert!(matches!(err, StateError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn a_file_is_written_whole_with_its_mode_and_no_temporary_left() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        assert_eq!(dir.read("x").unwrap(), None);
        dir.write_atomic("x", b"first", 0o600).unwrap();
        dir.write_atomic("x", b"second", 0o600).unwrap();
        assert_eq!(dir.read("x").unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(mode(&dir.file("x")), 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x"]);
    }

    #[test]
    fn a_write_cut_short_leaves_the_previous_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        dir.write_atomic("x", b"complete", 0o600).unwrap();
        // What a crash in the middle of a write leaves: half a temporary file,
        // world-readable as a stranger might have left it.
        let tmp = dir.file(".x.tmp");
        std::fs::write(&tmp, b"compl").unwrap();
        std::fs::set_permissions(&tmp, Permissions::from_mode(0o644)).unwrap();
        assert_eq!(dir.read("x").unwrap().as_deref(), Some(&b"complete"[..]));
        dir.write_atomic("x", b"next", 0o600).unwrap();
        assert_eq!(dir.read("x").unwrap().as_deref(), Some(&b"next"[..]));
        assert_eq!(mode(&dir.file("x")), 0o600);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_reader_never_sees_part_of_a_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        const SIZE: usize = 256 * 1024;
        let contents = [vec![b'a'; SIZE], vec![b'b'; SIZE * 2]];
        dir.write_atomic("x", &contents[0], 0o600).unwrap();
        let writer = {
            let dir = StateDir::open(dir.path()).unwrap();
            let contents = contents.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    dir.write_atomic("x", &contents[i % 2], 0o600).unwrap();
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() || reads == 0 {
            let seen = dir.read("x").unwrap().expect("the file is always there");
            assert!(
                contents.contains(&seen),
                "read {} bytes that are neither version",
                seen.len()
            );
            reads += 1;
        }
        writer.join().unwrap();
    }
}
