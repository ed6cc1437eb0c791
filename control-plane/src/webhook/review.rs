//! One AdmissionReview in, its answer out: no I/O, so every case is a unit
//! test. The answer always carries the request's `uid`.
//!
//! Only a Pod being created is changed. It is left alone (allowed, no patch)
//! when it is in the control plane's own namespace (the control plane must
//! start without itself), already injected (a re-invocation, or a pod
//! injected by `remora inject` before it was applied), annotated
//! `remora.io/inject: disabled`, or on the host's network. A pod whose
//! annotations cannot be honoured is refused with the same message
//! `remora inject` prints, so `kubectl` shows what to fix.

use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, META_API_VERSION_V1, META_KIND,
};
use kube::core::DynamicObject;
use serde_json::Value;

use crate::inject::{InjectSettings, INJECT, INJECTED};

use super::patch;

/// What the webhook injects, and where it never does.
#[derive(Debug, Clone)]
pub struct Policy {
    pub settings: InjectSettings,
    pub own_namespace: String,
}

/// A body that is not an AdmissionReview v1 with a request: answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not an AdmissionReview: {0}")]
    Shape(String),
    #[error("`{kind}` `{api_version}` is not an AdmissionReview admission.k8s.io/v1 (the webhook configuration must list admissionReviewVersions: [v1])")]
    Version { kind: String, api_version: String },
    #[error("the AdmissionReview has no `request`")]
    NoRequest,
}

/// Why a request was allowed unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a Pod, a subresource, or not a CREATE.
    NotPodCreate,
    /// The control plane's own namespace.
    OwnNamespace,
    /// `remora.io/injected` is there already.
    AlreadyInjected,
    /// `remora.io/inject: disabled`.
    OptedOut,
    /// `spec.hostNetwork: true`.
    HostNetwork,
    /// A CREATE without an object, or injection changed nothing.
    NothingToDo,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotPodCreate => "not a pod create",
            Skip::OwnNamespace => "the control plane's namespace",
            Skip::AlreadyInjected => "already injected",
            Skip::OptedOut => "opted out",
            Skip::HostNetwork => "host network",
            Skip::NothingToDo => "nothing to do",
        }
    }
}

/// What was done with the request, for the logs and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with a patch that adds the sidecar.
    Injected,
    /// Allowed, no patch.
    Unchanged(Skip),
    /// Not allowed: the message `kubectl` shows.
    Refused(String),
}

/// The review to send back, what was decided, and which pod it was about.
#[derive(Debug)]
pub struct Answer {
    pub review: AdmissionReview<DynamicObject>,
    pub outcome: Outcome,
    /// The request's namespace (empty when it has none).
    pub namespace: String,
    /// The pod's name, else its `generateName` (pods of a ReplicaSet have no
    /// name yet), else the request's name.
    pub name: String,
}

/// Reads the review in `body` and decides.
pub fn answer(body: &[u8], policy: &Policy) -> Result<Answer, BadReview> {
    let mut raw: Value =
        serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    // The object exactly as sent: the patch is computed against it, not
    // against what it becomes after a round trip through typed fields. It
    // is taken out of the review rather than copied, and the old object
    // (none for a CREATE) is dropped, so the typed review below holds
    // neither: a large pod is held once, not three times.
    let object = raw
        .pointer_mut("/request/object")
        .filter(|o| o.is_object())
        .map(Value::take);
    if let Some(old) = raw.pointer_mut("/request/oldObject") {
        *old = Value::Null;
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(raw).map_err(|e| BadReview::Shape(e.to_string()))?;
    if review.types.kind != META_KIND || review.types.api_version != META_API_VERSION_V1 {
        return Err(BadReview::Version {
            kind: review.types.kind,
            api_version: review.types.api_version,
        });
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| BadReview::NoRequest)?;
    let meta = |field: &str| {
        object
            .as_ref()
            .and_then(|o| o.pointer(&format!("/metadata/{field}")))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let namespace = request
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| meta("namespace"))
        .unwrap_or_default();
    let name = meta("name")
        .or_else(|| meta("generateName"))
        .unwrap_or_else(|| request.name.clone());
    let (response, outcome) = decide(&request, &namespace, object, policy);
    Ok(Answer {
        review: response.into_review(),
        outcome,
        namespace,
        name,
    })
}

fn decide(
    request: &AdmissionRequest<DynamicObject>,
    namespace: &str,
    object: Option<Value>,
    policy: &Policy,
) -> (AdmissionResponse, Outcome) {
    let allow = |skip| (AdmissionResponse::from(request), Outcome::Unchanged(skip));
    let pod = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.sub_resource.as_deref().unwrap_or("").is_empty();
    if !pod || request.operation != Operation::Create {
        return allow(Skip::NotPodCreate);
    }
    if namespace == policy.own_namespace {
        return allow(Skip::OwnNamespace);
    }
    let Some(mut object) = object else {
        return allow(Skip::NothingToDo);
    };
    // Injection finds pods by kind; an object sent without its type (it is
    // in `request.kind`) gets it here, on both sides of the diff, so the
    // patch never mentions it.
    if let Some(fields) = object.as_object_mut() {
        fields.entry("apiVersion").or_insert_with(|| "v1".into());
        fields.entry("kind").or_insert_with(|| "Pod".into());
    }
    let annotation = |key: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
    };
    if annotation(INJECTED).is_some() {
        return allow(Skip::AlreadyInjected);
    }
    if annotation(INJECT).and_then(Value::as_str) == Some("disabled") {
        return allow(Skip::OptedOut);
    }
    if object.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        return allow(Skip::HostNetwork);
    }
    match patch::injection(&object, &policy.settings) {
        Ok(ops) if ops.0.is_empty() => allow(Skip::NothingToDo),
        Ok(ops) => match AdmissionResponse::from(request).with_patch(ops) {
            Ok(response) => (response, Outcome::Injected),
            Err(e) => refuse(request, e.to_string()),
        },
        Err(e) => refuse(request, e.to_string()),
    }
}

/// Not allowed, with `message` for whoever created the pod (`kubectl` prints
/// it after "denied the request:").
fn refuse(
    request: &AdmissionRequest<DynamicObject>,
    message: String,
) -> (AdmissionResponse, Outcome) {
    let mut response = AdmissionResponse::from(request).deny(&message);
    response.result.code = 400;
    response.result.reason = "BadRequest".to_owned();
    (response, Outcome::Refused(message))
}

/// The review as the API server reads it. kube-core writes the patch's bytes
/// as an array of numbers, which Go's decoder happens to take; the schema's
/// `[]byte` is a base64 string, and that is what is sent.
pub fn encode(review: &AdmissionReview<DynamicObject>) -> Result<Vec<u8>, serde_json::Error> {
    let mut json = serde_json::to_value(review)?;
    let patch = review.response.as_ref().and_then(|r| r.patch.clone());
    if let (Some(patch), Some(slot)) = (patch, json.pointer_mut("/response/patch")) {
        *slot = serde_json::to_value(k8s_openapi::ByteString(patch))?;
    }
    serde_json::to_vec(&json)
}
