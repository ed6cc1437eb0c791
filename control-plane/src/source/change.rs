//! A change a client asks a source to make (apply or delete resources), and the
//! plan a source makes for it before anything is written.
//!
//! A resource is the same resource when its kind, namespace and name are: that
//! is [`ResourceId`], read from a document with [`ResourceId::of`].

use std::fmt;

use serde_yaml_ng::Value;

use super::{parse_spans, Document, Loaded};
use crate::problem::Problem;
use crate::resources::{Kind, ObjectKey, DEFAULT_NAMESPACE};

/// Which resource: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub kind: Kind,
    pub key: ObjectKey,
}

impl ResourceId {
    pub fn new(kind: Kind, key: ObjectKey) -> Self {
        ResourceId { kind, key }
    }

    /// The resource a document defines, when it says so: a kind Remora reads and
    /// a `metadata.name` (the namespace defaults to `default`). Nothing else of
    /// the document is looked at; validation judges the rest.
    pub fn of(value: &Value) -> Option<ResourceId> {
        let kind = Kind::from_name(value.get("kind")?.as_str()?)?;
        let metadata = value.get("metadata")?;
        let name = metadata.get("name")?.as_str()?;
        let namespace = match metadata.get("namespace") {
            None | Some(Value::Null) => DEFAULT_NAMESPACE,
            Some(namespace) => namespace.as_str()?,
        };
        Some(ResourceId::new(kind, ObjectKey::new(namespace, name)))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}

/// Reads one file a client sent: each document with its text, or the problems
/// reading it. A document must say which resource it is (a kind Remora reads and
/// a `metadata.name`); the rest is for validation to judge. With `namespace`,
/// a document without `metadata.namespace` is put in it, and one in another
/// namespace is a problem (as `kubectl -n`).
pub fn incoming(file: &str, text: &str, namespace: Option<&str>) -> (Vec<Incoming>, Vec<Problem>) {
    let (loaded, spans) = parse_spans(file, text);
    let mut problems = loaded.problems;
    let mut out = Vec::new();
    for mut document in loaded.documents {
        let own_text = spans
            .iter()
            .find(|s| s.indexes.len() == 1 && s.indexes.start == document.index)
            .and_then(|s| text.get(s.bytes.clone()))
            .map(str::to_owned);
        let at = |field: &str, message: String| Problem {
            document: Some(document.index),
            field: Some(field.to_owned()),
            kind: document
                .value
                .get("kind")
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..Problem::in_file(file, message)
        };
        let kind = document.value.get("kind").and_then(Value::as_str);
        let metadata = document.value.get("metadata");
        let written_namespace = metadata.and_then(|m| m.get("namespace"));
        let problem = match (kind, metadata.and_then(|m| m.get("name"))) {
            (None, _) => Some(at("kind", "required: the kind of resource".to_owned())),
            (Some(k), _) if Kind::from_name(k).is_none() => Some(at(
                "kind",
                format!(
                    "unknown kind \"{k}\" (Remora reads {})",
                    Kind::ALL.map(Kind::as_str).join(", ")
                ),
            )),
            (_, None | Some(Value::Null)) => Some(at("metadata.name", "required".to_owned())),
            _ => match (written_namespace, namespace) {
                (Some(Value::String(written)), Some(wanted)) if written != wanted => Some(at(
                    "metadata.namespace",
                    format!("is {written}, but the namespace asked for is {wanted}"),
                )),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            problems.push(problem);
            continue;
        }
        let fill = match namespace {
            Some(wanted) if matches!(written_namespace, None | Some(Value::Null)) => Some(wanted),
            _ => None,
        };
        let mut own_text = own_text;
        if let Some(wanted) = fill {
            if let Some(Value::Mapping(m)) = document.value.get_mut("metadata") {
                m.insert(
                    Value::String("namespace".to_owned()),
                    Value::String(wanted.to_owned()),
                );
                // The text no longer says what the value does.
                own_text = None;
            }
        }
        match ResourceId::of(&document.value) {
            Some(id) => out.push(Incoming {
                id,
                document,
                text: own_text,
            }),
            None => problems.push(Problem {
                document: Some(document.index),
                ..Problem::in_file(
                    file,
                    "does not say which resource it is (kind, metadata.name, metadata.namespace)",
                )
            }),
        }
    }
    (out, problems)
}

/// What a client asks for.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create these resources, or replace the ones with the same id.
    Apply(Vec<Incoming>),
    /// Remove these resources: every definition of each.
    Delete(Vec<ResourceId>),
}

/// A document a client sent.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: ResourceId,
    /// Named as the client named it (its file, its index there), so that a
    /// problem with it points where the client can find it.
    pub document: Document,
    /// The document's text as written, kept as it is (comments too) when the
    /// source stores text; `None` when the value was changed (e.g. a namespace
    /// filled in), so the value is written instead.
    pub text: Option<String>,
}

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl Action {
    /// As `kubectl` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
        }
    }
}

/// One resource's part of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub id: ResourceId,
    pub action: Action,
    /// Where the source keeps it (a file), or kept it (deleted).
    pub location: String,
}

/// Where an incoming document is in the staged documents, and where the client
/// had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub file: String,
    pub document: usize,
    pub client_file: String,
    pub client_document: usize,
}

/// One write a source will make: what `location` holds afterwards (`None`:
/// removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub location: String,
    pub contents: Option<String>,
}

/// A change planned against what a source holds, nothing written yet.
#[derive(Debug, Clone, Default)]
pub struct Staged {
    /// Everything the source would hold afterwards, read as it would be read
    /// back: what validation must accept before anything is written.
    pub loaded: Loaded,
    /// What happens to each resource, in the order asked.
    pub results: Vec<Applied>,
    /// Where each incoming document landed.
    pub placements: Vec<Placement>,
    /// What the change cannot do as asked (a resource to delete that does not
    /// exist, the same resource twice in one request, ...): any refuses it.
    pub problems: Vec<Problem>,
    /// The writes, in order; empty when nothing changes.
    pub writes: Vec<Write>,
}

impl Staged {
    /// A problem as the client knows it: a problem in an incoming document
    /// names the client's file and document instead of where it would be stored.
    pub fn as_client_sees(&self, mut problem: Problem) -> Problem {
        if let Some(p) = self.placement_of(&problem) {
            problem.file = p.client_file.clone();
            problem.document = Some(p.client_document);
        }
        problem
    }

    /// The incoming document a problem is about, if it is about one.
    pub fn placement_of(&self, problem: &Problem) -> Option<&Placement> {
        self.placements
            .iter()
            .find(|p| p.file == problem.file && Some(p.document) == problem.document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(yaml: &str) -> Value {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_document_names_its_resource_with_the_default_namespace() {
        let id = ResourceId::of(&value("kind: Service\nmetadata: {name: orders}\n")).unwrap();
        assert_eq!(id.to_string(), "Service default/orders");
        let id = ResourceId::of(&value(
            "kind: HTTPRoute\nmetadata: {name: r, namespace: shop}\n",
        ))
        .unwrap();
        assert_eq!(
            id,
            ResourceId::new(Kind::HttpRoute, ObjectKey::new("shop", "r"))
        );
    }

    #[test]
    fn incoming_documents_keep_their_text_and_take_the_namespace_asked_for() {
        let text = "# orders\napiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec: {}\n---\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {}\n";
        let (docs, problems) = incoming("a.yaml", text, None);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].id.to_string(), "Service default/orders");
        assert!(docs[0].text.as_deref().unwrap().starts_with("# orders\n"));
        assert!(docs[1]
            .text
            .as_deref()
            .unwrap()
            .starts_with("---\nkind: Service"));

        let (docs, problems) = incoming("a.yaml", text, Some("other"));
        assert_eq!(docs.len(), 1, "{problems:?}");
        assert_eq!(docs[0].id.to_string(), "Service other/orders");
        assert_eq!(
            docs[0].text, None,
            "the value was changed: it is written, not the text"
        );
        let [problem] = problems.as_slice() else {
            panic!("{problems:?}")
        };
        assert_eq!(problem.field.as_deref(), Some("metadata.namespace"));
        assert_eq!(problem.document, Some(2));
    }

    #[test]
    fn an_incoming_document_must_say_which_resource_it_is() {
        let (docs, problems) = incoming(
            "a.yaml",
            "kind: Pod\nmetadata: {name: a}\n---\nkind: Service\nmetadata: {}\n---\nmetadata: {name: b}\n",
            None,
        );
        assert!(docs.is_empty());
        let fields: Vec<_> = problems
            .iter()
            .map(|p| (p.document, p.field.as_deref()))
            .collect();
        assert_eq!(
            fields,
            [
                (Some(1), Some("kind")),
                (Some(2), Some("metadata.name")),
                (Some(3), Some("kind"))
            ]
        );
    }

    #[test]
    fn a_document_without_kind_or_name_names_nothing() {
        assert_eq!(
            ResourceId::of(&value("kind: Service\nmetadata: {}\n")),
            None
        );
        assert_eq!(
            ResourceId::of(&value("kind: Pod\nmetadata: {name: a}\n")),
            None
        );
        assert_eq!(ResourceId::of(&value("metadata: {name: a}\n")), None);
        assert_eq!(
            ResourceId::of(&value("kind: Service\nmetadata: {name: a, namespace: 3}\n")),
            None
        );
    }
}
