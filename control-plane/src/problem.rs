//! A problem with the user's configuration: where it is (file, line or document,
//! resource, field) and what is wrong.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::escape::escape_control;

/// One problem found while reading or validating configuration.
///
/// Displays as `FILE[:LINE:COLUMN]: KIND NAMESPACE/NAME: FIELD: MESSAGE`, leaving out
/// the parts that are unknown, with control characters escaped (every part may
/// come from a config file: see [`crate::escape`]), e.g.
/// `config/routes.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs[1].name: Service "orders-v3" does not exist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub file: String,
    /// 1-based; only for problems that stopped a document from being read (YAML
    /// syntax, a limit).
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

    /// Whether this problem leaves part of its file unread, so that part may
    /// define any resource: the file could not be read, a document could not be
    /// parsed or was refused by a limit (those carry a line), or a document does
    /// not say which resource it is.
    pub fn hides_resources(&self) -> bool {
        self.name.is_none() || self.line.is_some()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_control(&self.file))?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        match (&self.kind, &self.name, self.document) {
            (Some(kind), Some(name), _) => {
                let namespace = self.namespace.as_deref().unwrap_or_default();
                write!(
                    f,
                    ": {} {}/{}",
                    escape_control(kind),
                    escape_control(namespace),
                    escape_control(name)
                )?;
            }
            (Some(kind), None, Some(doc)) => {
                write!(f, ": {} in document {doc}", escape_control(kind))?
            }
            (None, _, Some(doc)) => write!(f, ": document {doc}")?,
            (Some(kind), None, None) => write!(f, ": {}", escape_control(kind))?,
            (None, _, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, ": {}", escape_control(field))?;
        }
        write!(f, ": {}", escape_control(&self.message))
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
    fn control_characters_in_every_part_are_escaped() {
        let p = Problem {
            kind: Some("Service".into()),
            namespace: Some("default".into()),
            name: Some("a\nFAKE LOG LINE\u{1b}[31m".into()),
            field: Some("metadata.name".into()),
            ..Problem::in_file("x\r.yaml", "\"a\nb\" is bad")
        };
        let shown = p.to_string();
        assert_eq!(
            shown,
            "x\\r.yaml: Service default/a\\nFAKE LOG LINE\\u{1b}[31m: metadata.name: \"a\\nb\" is bad"
        );
        assert!(!shown.contains(['\n', '\r', '\u{1b}']), "{shown}");
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
