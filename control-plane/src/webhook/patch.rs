//! The object as the API server sent it (JSON) -> the same object injected
//! by [`crate::inject::inject`] (which works on YAML values) -> the JSONPatch
//! (RFC 6902) from the first to the second, which the API server applies.

// `InjectError` names the object and annotation in full; it is made once per
// bad pod, off any hot path (as in `inject`).
#![allow(clippy::result_large_err)]

use serde_json::Value;

use crate::inject::{inject, InjectError, InjectSettings};

/// Why no patch could be made.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error(transparent)]
    Inject(#[from] InjectError),
    /// Cannot happen for JSON input; named rather than unwrapped.
    #[error("the pod cannot be converted for injection: {0}")]
    Convert(String),
}

/// The patch that injects `object`; empty when injection changes nothing.
pub fn injection(
    object: &Value,
    settings: &InjectSettings,
) -> Result<json_patch::Patch, PatchError> {
    let injected = injected(object, settings)?;
    Ok(json_patch::diff(object, &injected))
}

/// `object` injected, as JSON.
pub fn injected(object: &Value, settings: &InjectSettings) -> Result<Value, PatchError> {
    let yaml = serde_yaml_ng::to_value(object).map_err(|e| PatchError::Convert(e.to_string()))?;
    let yaml = inject(yaml, settings)?;
    serde_json::to_value(&yaml).map_err(|e| PatchError::Convert(e.to_string()))
}
