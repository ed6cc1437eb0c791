//! One YAML document -> a candidate resource: `apiVersion`, `kind` and `metadata`
//! here, `spec` in the per-kind decoders.

use serde_yaml_ng::{Mapping, Value};

use super::decode::{Decoder, FieldError};
use super::{httproute, names, policy, service, traffic};
use crate::problem::Problem;
use crate::resources::{
    AuthorizationPolicy, HttpRoute, Kind, MeshTls, ObjectKey, Service, TrafficPolicy,
    DEFAULT_NAMESPACE,
};
use crate::source::Document;

/// What a problem is about: the file and document, and the resource as far as it is
/// known.
#[derive(Debug, Clone)]
pub struct Subject {
    pub file: String,
    pub document: usize,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Subject {
    pub fn problem(&self, field: Option<String>, message: impl Into<String>) -> Problem {
        Problem {
            document: Some(self.document),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            field,
            ..Problem::in_file(self.file.clone(), message)
        }
    }

    /// `file (document N)`, to point at another definition.
    pub fn location(&self) -> String {
        format!("{} (document {})", self.file, self.document)
    }
}

pub enum Decoded {
    Service(Service),
    Route(HttpRoute),
    MeshTls(MeshTls),
    Authorization(AuthorizationPolicy),
    Traffic(Box<TrafficPolicy>),
}

/// A document of a known kind, decoded as far as possible.
pub struct Candidate {
    pub subject: Subject,
    pub kind: Kind,
    /// `None` when the document has no name.
    pub key: Option<ObjectKey>,
    /// `Some` only if decoding found no problem.
    pub resource: Option<Decoded>,
    pub errors: Vec<FieldError>,
}

impl Candidate {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty() && self.resource.is_some()
    }

    pub fn reject(&mut self, field: String, message: String) {
        self.errors.push(FieldError { field, message });
        self.resource = None;
    }

    pub fn problems(&self) -> impl Iterator<Item = Problem> + '_ {
        self.errors.iter().map(|e| {
            self.subject
                .problem(Some(e.field.clone()), e.message.clone())
        })
    }
}

const TOP_LEVEL: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Decodes a document whose kind Remora knows; any other document is one problem.
pub fn decode(doc: &Document) -> Result<Candidate, Box<Problem>> {
    let mut subject = Subject {
        file: doc.file.clone(),
        document: doc.index,
        kind: None,
        namespace: None,
        name: None,
    };
    let Value::Mapping(top) = &doc.value else {
        return Err(Box::new(subject.problem(
            None,
            "a resource must be a mapping with apiVersion, kind, metadata and spec",
        )));
    };
    let mut d = Decoder::default();
    let Some(kind_name) = d.required_string(top, "", "kind") else {
        let message = d
            .errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        return Err(Box::new(subject.problem(Some("kind".into()), message)));
    };
    subject.kind = Some(kind_name.clone());
    let metadata = metadata(top, &mut d);
    subject.namespace = Some(metadata.namespace.clone());
    subject.name = metadata.name.clone();
    let Some(kind) = Kind::from_name(&kind_name) else {
        return Err(Box::new(subject.problem(
            Some("kind".into()),
            format!(
                "unknown kind \"{kind_name}\" (Remora reads {})",
                Kind::ALL.map(Kind::as_str).join(", ")
            ),
        )));
    };
    api_version(top, kind, &mut d);
    d.known_fields(top, "", TOP_LEVEL, &[]);

    let key = metadata
        .name
        .as_ref()
        .map(|name| ObjectKey::new(metadata.namespace.clone(), name.clone()));
    if let Some(name) = &metadata.name {
        let checked = match kind {
            Kind::Service => names::dns1035_label(name),
            Kind::HttpRoute | Kind::MeshTls | Kind::AuthorizationPolicy | Kind::TrafficPolicy => {
                names::dns1123_subdomain(name)
            }
        };
        if let Err(message) = checked {
            d.error("metadata.name", message);
        }
    }

    let spec = match d.required_mapping(top, "", "spec") {
        None => None,
        Some(spec) => {
            let key = key.clone().unwrap_or_else(|| ObjectKey::new("", ""));
            match kind {
                Kind::Service => service::decode(top, spec, key, &mut d).map(Decoded::Service),
                Kind::HttpRoute => httproute::decode(spec, key, &mut d).map(Decoded::Route),
                Kind::MeshTls => policy::decode_mesh_tls(spec, key, &mut d).map(Decoded::MeshTls),
                Kind::AuthorizationPolicy => {
                    policy::decode_authorization(spec, key, &mut d).map(Decoded::Authorization)
                }
                Kind::TrafficPolicy => {
                    traffic::decode(spec, key, &mut d).map(|p| Decoded::Traffic(Box::new(p)))
                }
            }
        }
    };
    let resource = spec.filter(|_| d.is_clean() && key.is_some());
    Ok(Candidate {
        subject,
        kind,
        key,
        resource,
        errors: d.errors,
    })
}

struct Metadata {
    namespace: String,
    name: Option<String>,
}

fn metadata(top: &Mapping, d: &mut Decoder) -> Metadata {
    let mut out = Metadata {
        namespace: DEFAULT_NAMESPACE.to_owned(),
        name: None,
    };
    let Some(m) = d.required_mapping(top, "", "metadata") else {
        return out;
    };
    out.name = d.required_string(m, "metadata", "name");
    if let Some(namespace) = d.string(m, "metadata", "namespace") {
        if let Err(message) = names::dns1123_label(&namespace) {
            d.error("metadata.namespace", message);
        }
        out.namespace = namespace;
    }
    out
}

fn api_version(top: &Mapping, kind: Kind, d: &mut Decoder) {
    let Some(version) = d.required_string(top, "", "apiVersion") else {
        return;
    };
    let accepted = kind.api_versions();
    if !accepted.contains(&version.as_str()) {
        d.error(
            "apiVersion",
            format!(
                "\"{version}\" is not supported for {kind} (use {})",
                accepted.first().copied().unwrap_or_default()
            ),
        );
    }
}
