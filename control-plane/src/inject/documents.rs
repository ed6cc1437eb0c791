//! Multi-document YAML in, multi-document YAML out: what `remora inject` does
//! with a file. All or nothing: the first document that fails is the error and
//! nothing is written, so a pipe into `kubectl apply` never gets half a set.

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::{inject, uninject, InjectError, InjectSettings};

/// Which way to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inject,
    Uninject,
}

/// A document that could not be rewritten; `index` counts from 1 in the input.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document {index}: not YAML: {message}")]
    Syntax { index: usize, message: String },
    #[error("document {index}: {error}")]
    Inject { index: usize, error: InjectError },
    #[error("document {index}: cannot be written as YAML: {message}")]
    Write { index: usize, message: String },
}

/// Each document of `text` rewritten, separated by `---`. Empty documents (a
/// leading or trailing `---`) are dropped.
pub fn rewrite(
    text: &str,
    direction: Direction,
    settings: &InjectSettings,
) -> Result<String, DocumentError> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = Value::deserialize(document).map_err(|e| DocumentError::Syntax {
            index,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let value = match direction {
            Direction::Inject => inject(value, settings),
            Direction::Uninject => uninject(value),
        }
        .map_err(|error| DocumentError::Inject { index, error })?;
        let yaml = serde_yaml_ng::to_string(&value).map_err(|e| DocumentError::Write {
            index,
            message: e.to_string(),
        })?;
        out.push(yaml);
    }
    Ok(out.join("---\n"))
}
