//! Where the pod templates are: a Pod is its own template; the workload kinds
//! keep theirs at `spec.template`, a CronJob at `spec.jobTemplate.spec.template`;
//! a `List` (or `DeploymentList`, ...) holds objects in `items`.
//!
//! Kinds are matched with their API group, so a custom resource that happens to
//! be called `Deployment` passes through untouched.

use serde_yaml_ng::{Mapping, Value};

use super::{InjectError, ObjectRef};

/// A pod template and where it is: the object, and the path from the object to
/// the template (`spec.template.`), to name fields in errors.
pub(super) struct Site {
    pub object: ObjectRef,
    pub path: &'static str,
}

impl Site {
    /// An error about `field` of the template (`spec.containers`).
    pub fn field_error(&self, field: &str, message: impl Into<String>) -> InjectError {
        InjectError::Field {
            object: self.object.clone(),
            field: format!("{}{field}", self.path),
            message: message.into(),
        }
    }
}

pub(super) type Edit<'a> = dyn FnMut(&Site, &mut Mapping) -> Result<(), InjectError> + 'a;

/// Calls `edit` on each pod template in `doc` (the items of a list in order).
pub(super) fn each_pod_template(doc: &mut Value, edit: &mut Edit<'_>) -> Result<(), InjectError> {
    visit(doc, None, edit)
}

fn visit(doc: &mut Value, item: Option<usize>, edit: &mut Edit<'_>) -> Result<(), InjectError> {
    let Some(object) = doc.as_mapping_mut() else {
        return Ok(());
    };
    let kind = text(object, "kind").unwrap_or_default();
    let api_version = text(object, "apiVersion").unwrap_or_default();
    // `apps/v1` -> `apps`; the core group (`v1`) has no name.
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    if kind.ends_with("List") {
        if let Some(items) = object.get_mut("items").and_then(Value::as_sequence_mut) {
            for (index, item) in items.iter_mut().enumerate() {
                visit(item, Some(index), edit)?;
            }
        }
        return Ok(());
    }
    let Some(path) = template_path(group, &kind) else {
        return Ok(());
    };
    let metadata = object.get("metadata");
    let field = |name: &str| metadata.and_then(|m| m.get(name)).and_then(Value::as_str);
    let site = Site {
        object: ObjectRef {
            kind: kind.clone(),
            namespace: field("namespace").map(str::to_owned),
            name: field("name")
                .or_else(|| field("generateName"))
                .unwrap_or("(no name)")
                .to_owned(),
            item,
        },
        path: path.prefix,
    };
    let mut template = object;
    for (i, step) in path.steps.iter().enumerate() {
        template = match template.get_mut(*step).and_then(Value::as_mapping_mut) {
            Some(next) => next,
            None => {
                let at = path.steps[..=i].join(".");
                return Err(InjectError::Field {
                    object: site.object.clone(),
                    field: at,
                    message: "is missing (a pod template is expected here)".into(),
                });
            }
        };
    }
    edit(&site, template)
}

struct TemplatePath {
    steps: &'static [&'static str],
    /// `steps` joined, with a trailing dot.
    prefix: &'static str,
}

fn template_path(group: &str, kind: &str) -> Option<TemplatePath> {
    const TEMPLATE: TemplatePath = TemplatePath {
        steps: &["spec", "template"],
        prefix: "spec.template.",
    };
    match (group, kind) {
        ("", "Pod") => Some(TemplatePath {
            steps: &[],
            prefix: "",
        }),
        ("", "ReplicationController")
        | ("apps" | "extensions", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(TEMPLATE),
        ("batch", "CronJob") => Some(TemplatePath {
            steps: &["spec", "jobTemplate", "spec", "template"],
            prefix: "spec.jobTemplate.spec.template.",
        }),
        _ => None,
    }
}

fn text(map: &Mapping, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_owned)
}
