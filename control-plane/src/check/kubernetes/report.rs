//! What `remora check --kubernetes` found: one line per item.

use std::fmt;

use crate::client::Exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Worth knowing; does not fail the check.
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        })
    }
}

/// `FAIL  pod shop/orders-1 (ReplicaSet orders-5d8f): no remora-proxy container: ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub verdict: Verdict,
    /// What was checked: `CRD meshtlses.policy.remora.dev`, `pod shop/orders-1`.
    pub subject: String,
    pub detail: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}: {}", self.verdict, self.subject, self.detail)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    pub fn ok(&mut self, subject: impl Into<String>, detail: impl Into<String>) {
        self.push(Verdict::Ok, subject.into(), detail.into());
    }

    pub fn warn(&mut self, subject: impl Into<String>, detail: impl Into<String>) {
        self.push(Verdict::Warn, subject.into(), detail.into());
    }

    pub fn fail(&mut self, subject: impl Into<String>, detail: impl Into<String>) {
        self.push(Verdict::Fail, subject.into(), detail.into());
    }

    fn push(&mut self, verdict: Verdict, subject: String, detail: String) {
        self.items.push(Item {
            verdict,
            subject,
            detail,
        });
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.items.iter().filter(|i| i.verdict == verdict).count()
    }

    /// 0 with no FAIL (warnings allowed), else 1.
    pub fn exit(&self) -> Exit {
        match self.count(Verdict::Fail) {
            0 => Exit::Ok,
            _ => Exit::Failed,
        }
    }
}

/// The items, then `ok` or `N problems, M warnings`.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            writeln!(f, "{item}")?;
        }
        let plural = |n: usize, word: &str| match n {
            1 => format!("1 {word}"),
            n => format!("{n} {word}s"),
        };
        let (fails, warns) = (self.count(Verdict::Fail), self.count(Verdict::Warn));
        match (fails, warns) {
            (0, 0) => writeln!(f, "kubernetes: ok"),
            (0, w) => writeln!(f, "kubernetes: ok ({})", plural(w, "warning")),
            (p, w) => writeln!(
                f,
                "kubernetes: {}, {}",
                plural(p, "problem"),
                plural(w, "warning")
            ),
        }
    }
}
