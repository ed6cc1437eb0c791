//! Where resources come from. Today: YAML files in a directory, watched for changes.
//! (A Kubernetes source would produce the same [`Document`]s.)
//!
//! Not here: what the documents mean ([`crate::validate`]).

mod file;
mod watch;

pub use file::{load, parse, Document, Loaded};
pub use watch::DirWatcher;
