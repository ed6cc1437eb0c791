//! Where resources come from, and where writes through the API go: a [`Source`].
//! Today: YAML files in a directory, watched for changes ([`DirSource`]); a
//! Kubernetes source produces the same [`Document`]s behind the same trait. Files
//! are hostile input: their size and nesting are limited before the YAML parser
//! sees them.
//!
//! Not here: what the documents mean ([`crate::validate`]).

mod change; //    apply/delete requests and the plan a source makes for them
mod dir; //       the file source: a watched directory
mod file; //      a file -> its documents, within the limits
mod interface; // the `Source` trait
mod limits; //    size and depth limits, checked before parsing
mod scan; //      how deep YAML text nests, in one pass that tokenizes as libyaml does
mod split; //     a file -> its documents, parsed one by one
mod stage; //     planning a change to the directory, one document at a time
mod value; //     YAML -> Value, keeping integers too large for 64 bits
mod watch; //     inotify, debounced
mod write; //     atomic file writes, undone together

pub use change::{
    incoming, Action, Applied, Change, Incoming, Placement, ResourceId, Staged, Write,
};
pub use dir::DirSource;
pub(crate) use file::yaml_files;
pub use file::{load, parse, parse_spans, Document, Loaded, Span};
pub use interface::Source;
pub use limits::{MAX_DEPTH, MAX_FILE_BYTES};
pub use stage::REQUEST;
pub use watch::DirWatcher;
