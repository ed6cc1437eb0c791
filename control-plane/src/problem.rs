//! A problem with the user's configuration: where it is (file, line or document,
//! resource, field) and what is wrong.

use std::fmt;

use serde::Serialize;

/// One problem found while reading or validating configuration.
///
/// Displays as `FILE[:LINE:COLUMN]: KIND NAMESPACE/NAME: FIELD: MESSAGE`, leaving out
/// the parts that are unknown, e.g.
/// `config/routes.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs[1].name: Service "orders-v3" does not exist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    /// 1-based; for YAML syntax errors.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// 1-based index of the YAML document within the file.
    pub document: Option<usize>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The field path inside the resource, e.g. `spec.ports[0].port`.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// A problem with a whole file (unreadable, YAML syntax).
    pub fn in_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            line: None,
            column: None,
            document: None,
            kind: None,
            namespace: None,
            name: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        match (&self.kind, &self.name, self.document) {
            (Some(kind), Some(name), _) => {
                let namespace = self.namespace.as_deref().unwrap_or_default();
                write!(f, ": {kind} {namespace}/{name}")?;
            }
            (Some(kind), None, Some(doc)) => write!(f, ": {kind} in document {doc}")?,
            (None, _, Some(doc)) => write!(f, ": document {doc}")?,
            (Some(kind), None, None) => write!(f, ": {kind}")?,
            (None, _, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_resource_field_and_message() {
        let p = Problem {
            kind: Some("HTTPRoute".into()),
            namespace: Some("default".into()),
            name: Some("orders".into()),
            field: Some("spec.rules[0].backendRefs[1].name".into()),
            document: Some(2),
            ..Problem::in_file("config/routes.yaml", "Service \"orders-v3\" does not exist")
        };
        assert_eq!(
            p.to_string(),
            "config/routes.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs[1].name: Service \"orders-v3\" does not exist"
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let p = Problem::in_file("a.yaml", "YAML syntax error: bad indentation").at_line(3, 7);
        assert_eq!(
            p.to_string(),
            "a.yaml:3:7: YAML syntax error: bad indentation"
        );
    }

    #[test]
    fn unnamed_resources_are_named_by_document() {
        let p = Problem {
            kind: Some("Service".into()),
            document: Some(3),
            field: Some("metadata.name".into()),
            ..Problem::in_file("a.yaml", "required")
        };
        assert_eq!(
            p.to_string(),
            "a.yaml: Service in document 3: metadata.name: required"
        );
    }
}
