//! Writing files into the config directory so that no reader ever sees half a
//! file: each is written to a hidden temporary file beside it (the loader skips
//! hidden and non-YAML names), flushed to disk, then renamed over the old one.
//! A change of several files is undone when one of them cannot be written.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Write;
use crate::Error;

/// Mode of a new config file: config is not secret, and tools that read the
/// directory may run as another user.
const NEW_FILE_MODE: u32 = 0o644;

/// Makes every write, in order; when one fails, the ones made are undone and
/// the error names the file that failed.
pub fn commit(writes: &[Write]) -> Result<(), Error> {
    let mut done: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
    for write in writes {
        let path = PathBuf::from(&write.location);
        let made = previous_contents(&path).and_then(|previous| {
            match &write.contents {
                Some(text) => replace(&path, text.as_bytes())?,
                None => remove(&path)?,
            }
            Ok(previous)
        });
        match made {
            Ok(previous) => done.push((path, previous)),
            Err(source) => {
                undo(&done);
                return Err(Error::WriteConfig { path, source });
            }
        }
    }
    Ok(())
}

fn previous_contents(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts back what was there before, newest first.
fn undo(done: &[(PathBuf, Option<Vec<u8>>)]) {
    for (path, previous) in done.iter().rev() {
        let undone = match previous {
            Some(bytes) => replace(path, bytes),
            None => remove(path),
        };
        if let Err(error) = undone {
            tracing::error!(path = %path.display(), %error, "cannot undo a partly written change; check this file");
        }
    }
}

/// Replaces (or creates) `path` atomically, keeping the mode of the file it
/// replaces.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not in a directory")
    })?;
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(NEW_FILE_MODE);
    let mut file = tempfile::Builder::new()
        .prefix(".remora-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

fn remove(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A rename or removal survives a crash only once its directory is flushed.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, contents: Option<&str>) -> Write {
        Write {
            location: path.display().to_string(),
            contents: contents.map(str::to_owned),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_replace_and_remove_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        fs::write(&b, "old\n").unwrap();
        fs::set_permissions(&b, fs::Permissions::from_mode(0o600)).unwrap();
        commit(&[write(&a, Some("new\n")), write(&b, Some("changed\n"))]).unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "new\n");
        assert_eq!(fs::read_to_string(&b).unwrap(), "changed\n");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a), NEW_FILE_MODE);
        assert_eq!(mode(&b), 0o600, "a replaced file keeps its mode");
        commit(&[write(&a, None)]).unwrap();
        assert_eq!(names(dir.path()), ["b.yaml"]);
    }

    #[test]
    fn a_failed_write_undoes_the_ones_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        fs::write(&a, "before\n").unwrap();
        fs::write(&b, "keep\n").unwrap();
        // Not a directory: the third write cannot be made.
        let impossible = dir.path().join("b.yaml").join("c.yaml");
        let err = commit(&[
            write(&a, Some("after\n")),
            write(&b, None),
            write(&impossible, Some("x\n")),
        ])
        .unwrap_err();
        assert!(matches!(err, Error::WriteConfig { .. }), "{err}");
        assert_eq!(fs::read_to_string(&a).unwrap(), "before\n");
        assert_eq!(fs::read_to_string(&b).unwrap(), "keep\n");
        assert_eq!(names(dir.path()), ["a.yaml", "b.yaml"]);
    }
}
