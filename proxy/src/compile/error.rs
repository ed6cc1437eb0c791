//! A rejected resource: which one, which field, and what is wrong with it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    /// The resource kind, e.g. `Cluster`.
    pub kind: &'static str,
    pub name: String,
    /// The field path inside the resource, e.g. `virtual_hosts[0].routes[1].match`.
    pub field: String,
    pub message: String,
}

impl CompileError {
    pub fn new(
        kind: &'static str,
        name: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} \"{}\": ", self.kind, self.name)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}
