//! What `-f` names: a YAML file, every `*.yaml` / `*.yml` file directly in a
//! directory (in name order, hidden ones skipped, as the control plane reads its
//! own directory), or `-` for standard input. Each keeps its name, so the
//! control plane's problems point into the user's files.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::ClientError;
use crate::api::MAX_BODY_BYTES;

/// `(name, text)` of every file `paths` name, refusing more than the API takes.
pub fn read(paths: &[PathBuf]) -> Result<Vec<(String, String)>, ClientError> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_string(&mut text)
                .map_err(|source| ClientError::Read {
                    path: path.clone(),
                    source,
                })?;
            out.push(("<stdin>".to_owned(), text));
            continue;
        }
        let read_err = |source| ClientError::Read {
            path: path.clone(),
            source,
        };
        if std::fs::metadata(path).map_err(read_err)?.is_dir() {
            let files = crate::source::yaml_files(path).map_err(read_err)?;
            if files.is_empty() {
                return Err(ClientError::Input(format!(
                    "{} holds no *.yaml or *.yml file",
                    path.display()
                )));
            }
            for file in files {
                out.push(read_one(&file)?);
            }
        } else {
            out.push(read_one(path)?);
        }
    }
    let total: usize = out.iter().map(|(name, text)| name.len() + text.len()).sum();
    if total > MAX_BODY_BYTES {
        return Err(ClientError::Input(format!(
            "the files hold {total} bytes, more than the {MAX_BODY_BYTES} the API takes in one request; apply them in parts"
        )));
    }
    Ok(out)
}

fn read_one(path: &Path) -> Result<(String, String), ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok((path.display().to_string(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_gives_its_yaml_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "b: 1\n").unwrap();
        std::fs::write(dir.path().join("a.yml"), "a: 1\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "h: 1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "n\n").unwrap();
        let files = read(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|(n, _)| {
                Path::new(n)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = read(&[PathBuf::from("/nonexistent/x.yaml")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.yaml"), "{err}");
    }
}
