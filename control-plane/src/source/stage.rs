//! Planning a change to the config directory, one document at a time, so the
//! files stay the source of truth and stay as their authors wrote them:
//!
//! - a resource already defined is replaced where it is defined (the definition
//!   in force when it is written twice), the rest of that file untouched;
//! - a new resource gets a file of its own, `<kind>-<namespace>-<name>.yaml`;
//! - a deleted resource's documents are cut out of their files, and a file left
//!   without any document is removed;
//! - an applied resource equal to the one defined (as values: comments and
//!   layout aside) is `unchanged` and its file is not written.
//!
//! Every file touched is read again and checked against what was loaded, so a
//! file edited meanwhile is not overwritten; the staged documents are the new
//! files parsed as the loader will parse them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::change::{Action, Applied, Change, Incoming, Placement, ResourceId, Staged, Write};
use super::file::{parse, parse_spans, read_limited};
use super::{Document, Loaded};
use crate::problem::Problem;
use crate::resources::Kind;
use crate::store::Store;
use crate::Error;

/// A change a client made, for problems that are about the request itself.
pub const REQUEST: &str = "request";

/// Plans `change` in `dir`, given what was loaded from it and what is in force.
pub fn stage(
    dir: &Path,
    held: &Loaded,
    in_force: &Store,
    change: &Change,
) -> Result<Staged, Error> {
    let mut plan = Plan::new(dir, held);
    match change {
        Change::Apply(incoming) => {
            let mut seen: BTreeMap<&ResourceId, &Document> = BTreeMap::new();
            for doc in incoming {
                if let Some(first) = seen.get(&doc.id) {
                    let message = format!(
                        "duplicate in this request: {} is also in {} (document {})",
                        doc.id, first.file, first.index
                    );
                    plan.problems.push(problem(&doc.id, &doc.document, message));
                    continue;
                }
                seen.insert(&doc.id, &doc.document);
                plan.apply(doc, in_force);
            }
        }
        Change::Delete(ids) => {
            for id in ids {
                plan.delete(id, in_force);
            }
        }
    }
    plan.finish()
}

fn problem(id: &ResourceId, at: &Document, message: String) -> Problem {
    Problem {
        document: Some(at.index),
        kind: Some(id.kind.as_str().to_owned()),
        namespace: Some(id.key.namespace.clone()),
        name: Some(id.key.name.clone()),
        field: Some("metadata.name".to_owned()),
        ..Problem::in_file(at.file.clone(), message)
    }
}

/// One edit of a file: the document at `index` replaced by `text` (`None`:
/// removed).
struct Edit {
    index: usize,
    text: Option<String>,
}

struct Plan<'a> {
    dir: &'a Path,
    held: &'a Loaded,
    /// By file (as the loader names it): the edits to make there.
    edits: BTreeMap<String, Vec<Edit>>,
    /// New files: name -> text.
    created: BTreeMap<String, String>,
    results: Vec<Applied>,
    /// Incoming documents and where they go: (file, index when known).
    placements: Vec<(Placement, Option<ResourceId>)>,
    problems: Vec<Problem>,
}

impl<'a> Plan<'a> {
    fn new(dir: &'a Path, held: &'a Loaded) -> Self {
        Plan {
            dir,
            held,
            edits: BTreeMap::new(),
            created: BTreeMap::new(),
            results: Vec::new(),
            placements: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The held documents that define `id`, the one in force first, then in
    /// file and document order.
    fn definitions(&self, id: &ResourceId, in_force: &Store) -> Vec<&'a Document> {
        let held: &'a Loaded = self.held;
        let mut found: Vec<&'a Document> = held
            .documents
            .iter()
            .filter(|d| ResourceId::of(&d.value).as_ref() == Some(id))
            .collect();
        let origin = in_force.origin(id.kind, &id.key);
        found.sort_by_key(|d| (Some(d.file.as_str()) != origin, d.file.clone(), d.index));
        found
    }

    fn apply(&mut self, doc: &Incoming, in_force: &Store) {
        let definitions = self.definitions(&doc.id, in_force);
        let text = doc
            .text
            .clone()
            .or_else(|| serde_yaml_ng::to_string(&doc.document.value).ok());
        let Some(text) = text else {
            let message = "cannot be written back as YAML".to_owned();
            self.problems.push(problem(&doc.id, &doc.document, message));
            return;
        };
        let client = |file: &str, index: usize| Placement {
            file: file.to_owned(),
            document: index,
            client_file: doc.document.file.clone(),
            client_document: doc.document.index,
        };
        match definitions.first() {
            Some(existing) => {
                let action = if existing.value == doc.document.value {
                    Action::Unchanged
                } else {
                    self.edits
                        .entry(existing.file.clone())
                        .or_default()
                        .push(Edit {
                            index: existing.index,
                            text: Some(text),
                        });
                    Action::Configured
                };
                self.placements
                    .push((client(&existing.file, existing.index), None));
                self.results.push(Applied {
                    id: doc.id.clone(),
                    action,
                    location: existing.file.clone(),
                });
            }
            None => {
                let file = self.new_file_name(&doc.id);
                // Its index is known once the new file is parsed.
                self.placements
                    .push((client(&file, 1), Some(doc.id.clone())));
                self.results.push(Applied {
                    id: doc.id.clone(),
                    action: Action::Created,
                    location: file.clone(),
                });
                self.created.insert(file, with_final_newline(text));
            }
        }
    }

    fn delete(&mut self, id: &ResourceId, in_force: &Store) {
        let definitions = self.definitions(id, in_force);
        let Some(first) = definitions.first() else {
            self.problems.push(Problem {
                kind: Some(id.kind.as_str().to_owned()),
                namespace: Some(id.key.namespace.clone()),
                name: Some(id.key.name.clone()),
                ..Problem::in_file(REQUEST, "not found")
            });
            return;
        };
        self.results.push(Applied {
            id: id.clone(),
            action: Action::Deleted,
            location: first.file.clone(),
        });
        for d in definitions {
            self.edits.entry(d.file.clone()).or_default().push(Edit {
                index: d.index,
                text: None,
            });
        }
    }

    /// `service-default-orders.yaml`, or with `-2`, `-3`... when that name is
    /// taken. Characters a file name should not hold become `_` (the name is
    /// validated before anything is written; this only keeps the path inside
    /// the directory meanwhile).
    fn new_file_name(&self, id: &ResourceId) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    'a'..='z' | '0'..='9' | '-' | '.' => c,
                    'A'..='Z' => c.to_ascii_lowercase(),
                    _ => '_',
                })
                .collect()
        };
        let stem = format!(
            "{}-{}-{}",
            kind_file_name(id.kind),
            clean(&id.key.namespace),
            clean(&id.key.name)
        );
        let taken: BTreeSet<&str> = self
            .held
            .documents
            .iter()
            .map(|d| d.file.as_str())
            .chain(self.held.problems.iter().map(|p| p.file.as_str()))
            .collect();
        (1..)
            .map(|n| match n {
                1 => format!("{stem}.yaml"),
                n => format!("{stem}-{n}.yaml"),
            })
            .map(|name| label(&self.dir.join(name)))
            .find(|l| {
                !taken.contains(l.as_str())
                    && !self.created.contains_key(l)
                    && !Path::new(l).exists()
            })
            .unwrap_or_default()
    }

    fn finish(mut self) -> Result<Staged, Error> {
        let mut by_file: BTreeMap<String, Loaded> = BTreeMap::new();
        for d in &self.held.documents {
            by_file
                .entry(d.file.clone())
                .or_default()
                .documents
                .push(d.clone());
        }
        for p in &self.held.problems {
            by_file
                .entry(p.file.clone())
                .or_default()
                .problems
                .push(p.clone());
        }
        let mut writes = Vec::new();
        let edits = std::mem::take(&mut self.edits);
        for (file, edits) in edits {
            let held = by_file.get(&file).cloned().unwrap_or_default();
            match self.edit(&file, &held, edits)? {
                Ok((text, loaded)) => {
                    let removed = loaded.documents.is_empty() && loaded.problems.is_empty();
                    writes.push(Write {
                        location: file.clone(),
                        contents: (!removed).then_some(text),
                    });
                    if removed {
                        by_file.remove(&file);
                    } else {
                        by_file.insert(file, loaded);
                    }
                }
                Err(problem) => self.problems.push(problem),
            }
        }
        for (name, text) in &self.created {
            writes.push(Write {
                location: name.clone(),
                contents: Some(text.clone()),
            });
            by_file.insert(name.clone(), parse(name, text));
        }
        let mut loaded = Loaded::default();
        for (_, l) in by_file {
            loaded.documents.extend(l.documents);
            loaded.problems.extend(l.problems);
        }
        let placements = self
            .placements
            .into_iter()
            .map(|(mut placement, new)| {
                if let Some(id) = new {
                    if let Some(d) = loaded.documents.iter().find(|d| {
                        d.file == placement.file && ResourceId::of(&d.value).as_ref() == Some(&id)
                    }) {
                        placement.document = d.index;
                    }
                }
                placement
            })
            .collect();
        Ok(Staged {
            loaded,
            results: self.results,
            placements,
            problems: self.problems,
            writes,
        })
    }

    /// The new text of `file` and what it reads as, or a problem when it cannot
    /// be edited one document at a time. Fails when the file cannot be read.
    fn edit(
        &self,
        file: &str,
        held: &Loaded,
        mut edits: Vec<Edit>,
    ) -> Result<Result<(String, Loaded), Problem>, Error> {
        let path = PathBuf::from(file);
        let cannot = |message: String| Problem::in_file(file, message);
        if path.parent() != Some(self.dir) || path.to_str() != Some(file) {
            return Ok(Err(cannot(
                "cannot be rewritten (its name is not UTF-8); edit it by hand".to_owned(),
            )));
        }
        let changed = || cannot("changed while the change was being made; try again".to_owned());
        let text = match read_limited(&path) {
            Ok(Ok(text)) => text,
            Ok(Err(limit)) => return Ok(Err(cannot(limit.to_string()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(changed())),
            Err(source) => return Err(Error::ReadConfig { path, source }),
        };
        let (now, spans) = parse_spans(file, &text);
        if now != *held {
            return Ok(Err(changed()));
        }
        // From the end, so the byte ranges before each edit stay where they are.
        edits.sort_by_key(|e| std::cmp::Reverse(e.index));
        edits.dedup_by_key(|e| e.index);
        let mut out = text.clone();
        for edit in edits {
            let Some((position, span)) = spans
                .iter()
                .enumerate()
                .find(|(_, s)| s.indexes.contains(&edit.index))
            else {
                return Ok(Err(cannot(format!("has no document {}", edit.index))));
            };
            if span.indexes.len() != 1 {
                return Ok(Err(cannot(format!(
                    "document {} shares its text with another (a `...` marker); edit the file by hand",
                    edit.index
                ))));
            }
            let replacement = match edit.text {
                Some(text) => as_piece(&text, position == 0),
                None => String::new(),
            };
            out.replace_range(span.bytes.clone(), &replacement);
        }
        let loaded = parse(file, &out);
        Ok(Ok((out, loaded)))
    }
}

/// A document's text as a piece of a file: a piece after the first starts with
/// `---`, and every piece ends with a line break.
fn as_piece(text: &str, first: bool) -> String {
    let starts_with_marker = text
        .strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r']));
    let mut piece = String::with_capacity(text.len() + 4);
    if !first && !starts_with_marker {
        piece.push_str("---\n");
    }
    piece.push_str(text);
    with_final_newline(piece)
}

fn with_final_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A file as the loader names it.
fn label(path: &Path) -> String {
    path.display().to_string()
}

/// The kind in a new file's name.
fn kind_file_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "service",
        Kind::HttpRoute => "httproute",
        Kind::MeshTls => "meshtls",
        Kind::AuthorizationPolicy => "authorizationpolicy",
        Kind::TrafficPolicy => "trafficpolicy",
    }
}

#[cfg(test)]
mod tests;
