//! Reading YAML files into documents. Only syntax is checked here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::problem::Problem;
use crate::Error;

/// One YAML document: a resource to be decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file as it was named when loaded (directory joined with file name).
    pub file: String,
    /// 1-based position of the document in its file.
    pub index: usize,
    pub value: Value,
}

/// Everything read from a file or directory: the documents that parsed, and the
/// problems with those that did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub problems: Vec<Problem>,
}

impl Loaded {
    fn extend(&mut self, other: Loaded) {
        self.documents.extend(other.documents);
        self.problems.extend(other.problems);
    }
}

/// Reads one file, or every `*.yaml` / `*.yml` file directly inside a directory (in
/// name order). Fails only when `path` itself cannot be read; a file inside the
/// directory that cannot be read is reported as a problem.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let read_err = |source| Error::ReadConfig {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_err)?;
    if !metadata.is_dir() {
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        return Ok(parse(&path.display().to_string(), &text));
    }
    let mut loaded = Loaded::default();
    for file in yaml_files(path).map_err(read_err)? {
        let name = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => loaded.extend(parse(&name, &text)),
            // Deleted between listing and reading: the next reload sees it gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => loaded
                .problems
                .push(Problem::in_file(name, format!("cannot read: {e}"))),
        }
    }
    Ok(loaded)
}

fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if is_yaml && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Splits `text` into YAML documents (`---` separated). Documents before a syntax
/// error are kept; the error is reported with its line, and the rest of the file is
/// skipped (the parser cannot resynchronise after an error).
pub fn parse(file: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            // An empty document (e.g. a trailing `---`) holds nothing.
            Ok(Value::Null) => {}
            Ok(value) => loaded.documents.push(Document {
                file: file.to_owned(),
                index: i + 1,
                value,
            }),
            Err(e) => {
                loaded.problems.push(syntax_problem(file, &e));
                break;
            }
        }
    }
    loaded
}

fn syntax_problem(file: &str, e: &serde_yaml_ng::Error) -> Problem {
    let message = e.to_string();
    match e.location() {
        Some(l) => {
            let at = format!(" at line {} column {}", l.line(), l.column());
            let message = message.replacen(&at, "", 1);
            Problem::in_file(file, format!("YAML syntax error: {message}"))
                .at_line(l.line(), l.column())
        }
        None => Problem::in_file(file, format!("YAML syntax error: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let loaded = parse("a.yaml", "a: 1\n---\n---\nb: 2\n---\n");
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let indexes: Vec<_> = loaded.documents.iter().map(|d| d.index).collect();
        assert_eq!(indexes, [1, 3]);
    }

    #[test]
    fn syntax_error_names_file_and_line_and_keeps_earlier_documents() {
        let loaded = parse("a.yaml", "a: 1\n---\nb: [1, 2\nc: 3\n");
        assert_eq!(loaded.documents.len(), 1);
        let [problem] = loaded.problems.as_slice() else {
            panic!("expected one problem, got {:?}", loaded.problems);
        };
        assert_eq!(problem.file, "a.yaml");
        assert!(problem.line.is_some_and(|l| l >= 3), "{problem}");
        assert!(
            problem.message.starts_with("YAML syntax error"),
            "{problem}"
        );
        assert!(!problem.message.contains(" at line 4 column"), "{problem}");
    }

    #[test]
    fn loads_yaml_files_of_a_directory_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yml"), "b: 1\n").unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not: yaml\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "h: 1\n").unwrap();
        let loaded = load(dir.path()).unwrap();
        let files: Vec<_> = loaded.documents.iter().map(|d| d.file.clone()).collect();
        assert_eq!(
            files,
            [
                dir.path().join("a.yaml").display().to_string(),
                dir.path().join("b.yml").display().to_string()
            ]
        );
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("nope")).is_err());
    }
}
