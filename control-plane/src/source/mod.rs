//! Where resources come from. Today: YAML files in a directory, watched for changes.
//! (A Kubernetes source would produce the same [`Document`]s.) Files are hostile
//! input: their size and nesting are limited before the YAML parser sees them.
//!
//! Not here: what the documents mean ([`crate::validate`]).

mod file;
mod limits; //  size and depth limits, checked before parsing
mod scan; //    how deep YAML text nests, in one pass that tokenizes as libyaml does
mod split; //   a file -> its documents, parsed one by one
mod value; //   YAML -> Value, keeping integers too large for 64 bits
mod watch;

pub use file::{load, parse, Document, Loaded};
pub use limits::{MAX_DEPTH, MAX_FILE_BYTES};
pub use watch::DirWatcher;
