//! Reading YAML files into documents. Only syntax and limits are checked here.
//!
//! A file is read only up to [`MAX_FILE_BYTES`]; it is then split into its
//! documents (`split`), each document is checked against the depth limit
//! (`limits`) and parsed on its own (integers too large for 64 bits are kept for
//! the decoder to report: `value`). So a document that is too deep or has a
//! syntax error is one problem, and the other documents of the file still load.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::limits::{self, LimitError, MAX_FILE_BYTES};
use super::split::{self, Piece};
use super::value::Lenient;
use crate::problem::Problem;
use crate::Error;

/// One YAML document: a resource to be decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where the document was read from, for problems to name: a file as it
    /// was named when loaded (directory joined with file name), or for the
    /// Kubernetes source the object (`Service shop/orders`).
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
/// directory that cannot be read, or is over the size limit, is reported as a
/// problem.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let read_err = |source| Error::ReadConfig {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_err)?;
    if !metadata.is_dir() {
        let name = path.display().to_string();
        return Ok(match read_limited(path).map_err(read_err)? {
            Ok(text) => parse(&name, &text),
            Err(limit) => too_large(&name, &limit),
        });
    }
    let mut loaded = Loaded::default();
    for file in yaml_files(path).map_err(read_err)? {
        let name = file.display().to_string();
        match read_limited(&file) {
            Ok(Ok(text)) => loaded.extend(parse(&name, &text)),
            Ok(Err(limit)) => loaded.extend(too_large(&name, &limit)),
            // Deleted between listing and reading: the next reload sees it gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => loaded
                .problems
                .push(Problem::in_file(name, format!("cannot read: {e}"))),
        }
    }
    Ok(loaded)
}

/// The text of a file, unless it is over [`MAX_FILE_BYTES`]: its size is checked
/// before reading, and no more than the limit is read in case it grows meanwhile.
pub(super) fn read_limited(path: &Path) -> std::io::Result<Result<String, LimitError>> {
    let file = std::fs::File::open(path)?;
    if let Err(limit) = limits::check_size(file.metadata()?.len()) {
        return Ok(Err(limit));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if let Err(limit) = limits::check_size(size) {
        return Ok(Err(limit));
    }
    String::from_utf8(bytes)
        .map(Ok)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn too_large(file: &str, limit: &LimitError) -> Loaded {
    Loaded {
        documents: Vec::new(),
        problems: vec![Problem::in_file(file, limit.to_string())],
    }
}

/// The `*.yaml` / `*.yml` files of `dir` that are not hidden, in name order.
pub(crate) fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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

/// Splits `text` into YAML documents (`---` separated) and parses each on its
/// own. A document that is too deep or cannot be parsed is reported (with its
/// line, and its resource when its `kind` and `metadata` can be read) and the
/// others are kept.
pub fn parse(file: &str, text: &str) -> Loaded {
    parse_spans(file, text).0
}

/// Where one piece of a file's text (see `split`) is, and the document indexes
/// it holds: one, except for a piece with a `...` end marker inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Byte range in the file's text.
    pub bytes: std::ops::Range<usize>,
    /// The 1-based document indexes read from it.
    pub indexes: std::ops::Range<usize>,
}

/// [`parse`], and where each document's text is: what a source that rewrites a
/// file one document at a time needs.
pub fn parse_spans(file: &str, text: &str) -> (Loaded, Vec<Span>) {
    let mut loaded = Loaded::default();
    let mut spans = Vec::new();
    let size = u64::try_from(text.len()).unwrap_or(u64::MAX);
    if let Err(limit) = limits::check_size(size) {
        return (too_large(file, &limit), spans);
    }
    let bom = if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let text = &text[bom..];
    let mut index = 0;
    for piece in split::documents(text) {
        let first = index + 1;
        let bytes = bom + piece.start..bom + piece.start + piece.text.len();
        if let Err(limit) = limits::check_depth(piece.text) {
            index += 1;
            loaded
                .problems
                .push(limit_problem(file, index, &piece, &limit));
            spans.push(Span {
                bytes,
                indexes: first..index + 1,
            });
            continue;
        }
        // Normally one document; more if the piece holds a `...` end marker.
        for document in serde_yaml_ng::Deserializer::from_str(piece.text) {
            index += 1;
            match Lenient::deserialize(document) {
                // An empty document (e.g. a trailing `---`) holds nothing.
                Ok(Lenient(Value::Null)) => {}
                Ok(Lenient(value)) => loaded.documents.push(Document {
                    file: file.to_owned(),
                    index,
                    value,
                }),
                Err(e) => {
                    // The parser cannot go on after an error: the rest of this
                    // piece (not of the file) is skipped.
                    loaded
                        .problems
                        .push(syntax_problem(file, index, &piece, &e));
                    break;
                }
            }
        }
        spans.push(Span {
            bytes,
            indexes: first..index + 1,
        });
    }
    (loaded, spans)
}

fn limit_problem(file: &str, index: usize, piece: &Piece<'_>, limit: &LimitError) -> Problem {
    let problem = named(
        Problem {
            document: Some(index),
            ..Problem::in_file(file, limit.to_string())
        },
        piece.text,
    );
    match limit {
        LimitError::TooDeep { line, column, .. } => {
            problem.at_line(line + piece.first_line - 1, *column)
        }
        LimitError::TooLarge { .. } => problem,
    }
}

fn syntax_problem(
    file: &str,
    index: usize,
    piece: &Piece<'_>,
    e: &serde_yaml_ng::Error,
) -> Problem {
    let offset = piece.first_line - 1;
    let mut message = e.to_string();
    let mut problem = Problem {
        document: Some(index),
        ..Problem::in_file(file, "")
    };
    if let Some(l) = e.location() {
        // The location is in its own fields; the message keeps only the rest.
        let at_line = format!(" at line {} column {}", l.line(), l.column());
        let at_position = format!(" at position {}", l.index());
        message = message
            .replacen(&at_line, "", 1)
            .replacen(&at_position, "", 1);
        problem = problem.at_line(l.line() + offset, l.column());
    } else {
        // A problem with a line says the document was not read (see
        // `Problem::hides_resources`): point at the document's first line.
        problem = problem.at_line(piece.first_line, 1);
    }
    // Other positions in the message (`while parsing ... at line 2 column 4`)
    // are within the piece too.
    problem.message = format!("YAML syntax error: {}", shift_lines(&message, offset));
    named(problem, piece.text)
}

/// `line N column` in a parser message, moved down by `offset` lines.
fn shift_lines(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        rest = match after[..digits].parse::<usize>() {
            Ok(n) if after[digits..].starts_with(" column") => {
                out.push_str(&(n + offset).to_string());
                &after[digits..]
            }
            _ => after,
        };
    }
    out.push_str(rest);
    out
}

/// Names the resource of a document that could not be read, when its top-level
/// `kind:` line and `metadata:` block can be read on their own.
fn named(mut problem: Problem, text: &str) -> Problem {
    let mut picked = String::new();
    let mut in_metadata = false;
    for line in text.lines() {
        let top_level = !line.is_empty() && !line.starts_with([' ', '\t']);
        if top_level {
            in_metadata = line.starts_with("metadata:");
            if !in_metadata && !line.starts_with("kind:") {
                continue;
            }
        } else if !in_metadata {
            continue;
        }
        picked.push_str(line);
        picked.push('\n');
    }
    // What was picked is YAML from a hostile file too: the same limit applies.
    if picked.is_empty() || limits::check_depth(&picked).is_err() {
        return problem;
    }
    let Ok(Lenient(Value::Mapping(top))) = serde_yaml_ng::from_str::<Lenient>(&picked) else {
        return problem;
    };
    let text_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let metadata = top.get("metadata");
    let (Some(kind), Some(name)) = (
        text_of(top.get("kind")),
        text_of(metadata.and_then(|m| m.get("name"))),
    ) else {
        return problem;
    };
    let namespace = text_of(metadata.and_then(|m| m.get("namespace")))
        .unwrap_or_else(|| crate::resources::DEFAULT_NAMESPACE.to_owned());
    problem.kind = Some(kind);
    problem.namespace = Some(namespace);
    problem.name = Some(name);
    problem
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
    fn one_bad_document_does_not_hide_the_others() {
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata:
  name: b
  namespace: shop
spec: {ports: [{port: 80}
---
apiVersion: v1
kind: Service
metadata: {name: c}
spec: {ports: [{port: 80}]}
";
        let loaded = parse("s.yaml", text);
        let names: Vec<_> = loaded
            .documents
            .iter()
            .map(|d| (d.index, d.value["metadata"]["name"].as_str()))
            .collect();
        assert_eq!(names, [(1, Some("a")), (3, Some("c"))]);
        let [problem] = loaded.problems.as_slice() else {
            panic!("expected one problem, got {:?}", loaded.problems);
        };
        assert_eq!(problem.document, Some(2));
        assert_eq!(
            (
                problem.kind.as_deref(),
                problem.namespace.as_deref(),
                problem.name.as_deref()
            ),
            (Some("Service"), Some("shop"), Some("b"))
        );
        assert!(
            problem.line.is_some_and(|l| (11..=12).contains(&l)),
            "{problem}"
        );
        let shown = problem.to_string();
        assert!(
            shown.contains("Service shop/b: YAML syntax error"),
            "{shown}"
        );
    }

    #[test]
    fn syntax_errors_carry_the_line_in_the_file() {
        let loaded = parse("a.yaml", "a: 1\n---\nb: 2\n---\nc: d: e\n");
        assert_eq!(loaded.documents.len(), 2);
        let [problem] = loaded.problems.as_slice() else {
            panic!("expected one problem, got {:?}", loaded.problems);
        };
        assert_eq!(
            (problem.document, problem.line),
            (Some(3), Some(5)),
            "{problem}"
        );
    }

    #[test]
    fn a_document_over_the_depth_limit_is_one_problem() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(
            "a: 1\n---\nkind: Service\nmetadata: {{name: deep}}\nspec: {deep}\n---\nb: 2\n"
        );
        let loaded = parse("deep.yaml", &text);
        let indexes: Vec<_> = loaded.documents.iter().map(|d| d.index).collect();
        assert_eq!(indexes, [1, 3]);
        let [problem] = loaded.problems.as_slice() else {
            panic!("expected one problem, got {:?}", loaded.problems);
        };
        assert_eq!(problem.line, Some(5), "{problem}");
        assert_eq!(problem.name.as_deref(), Some("deep"), "{problem}");
        assert!(problem.message.contains("depth limit"), "{problem}");
    }

    #[test]
    fn a_number_too_large_for_64_bits_is_not_a_syntax_error() {
        let loaded = parse("a.yaml", "w: 99999999999999999999\n---\nb: 2\n");
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.documents.len(), 2);
    }

    #[test]
    fn a_file_over_the_size_limit_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        std::fs::write(dir.path().join("ok.yaml"), "a: 1\n").unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.documents.len(), 1);
        let [problem] = loaded.problems.as_slice() else {
            panic!("expected one problem, got {:?}", loaded.problems);
        };
        assert!(problem.file.ends_with("big.yaml"), "{problem}");
        assert!(problem.message.contains("size limit"), "{problem}");
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
