//! `remora check`: validate a file or a directory offline, exactly as the control
//! plane would. References are checked against the files given, so check the whole
//! directory to check references between files.
//!
//! [`kubernetes`]: `remora check --kubernetes`, what is wrong with an
//! installation in a cluster.

pub mod kubernetes;

use std::collections::BTreeMap;
use std::path::Path;

use crate::problem::Problem;
use crate::resources::Kind;
use crate::{source, validate, Error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Valid resources by kind.
    pub valid: BTreeMap<Kind, usize>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// `3 Services, 1 HTTPRoute`
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .valid
            .iter()
            // Policies are optional: mentioned only when there are some.
            .filter(|(kind, n)| **n > 0 || matches!(kind, Kind::Service | Kind::HttpRoute))
            .map(|(kind, n)| {
                let name = if *n == 1 {
                    kind.as_str()
                } else {
                    kind.plural()
                };
                format!("{n} {name}")
            })
            .collect();
        parts.join(", ")
    }
}

/// Fails only if `path` cannot be read at all.
pub fn check(path: &Path) -> Result<Report, Error> {
    let loaded = source::load(path)?;
    let outcome = validate::validate_loaded(&loaded);
    Ok(Report {
        valid: outcome.store.counts(),
        problems: outcome.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_problems_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 0}]}\n",
        )
        .unwrap();
        let report = check(dir.path()).unwrap();
        assert!(!report.is_ok());
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.summary(), "1 Service, 0 HTTPRoutes");
    }
}
