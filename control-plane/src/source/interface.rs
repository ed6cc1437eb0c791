//! The one interface the control plane reads and writes resources through. The
//! directory of YAML files ([`super::DirSource`]) is one source; a Kubernetes
//! cluster is another. Validation, translation, the xDS server and the API only
//! ever see documents, problems and this trait.
//!
//! A source holds documents (one resource each, with a location a problem can
//! name, e.g. a file). It does not validate them: the caller validates what
//! [`Source::stage`] says the source would hold before calling
//! [`Source::commit`], so a bad change is refused before anything is written.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Change, Loaded, Staged};
use crate::problem::Problem;
use crate::store::Store;
use crate::Error;

/// Where the control plane's resources come from.
pub trait Source: Send + Sync + std::fmt::Debug + 'static {
    /// For logs: `directory /etc/remora/config`.
    fn describe(&self) -> String;

    /// Everything the source holds now: its documents, and the problems reading
    /// them. Fails only when the source itself cannot be read.
    fn load(&self) -> BoxFuture<'_, Result<Loaded, Error>>;

    /// Resolves once what the source holds may have changed since the last call
    /// (by anyone, writes through [`Source::commit`] included). A burst of
    /// changes resolves it once.
    fn changed(&self) -> BoxFuture<'_, ()>;

    /// Plans `change` against `held` (what [`Source::load`] just returned) and
    /// `in_force` (which definition of a resource written twice is the one in
    /// force): the documents the source would hold afterwards and the writes
    /// that make it so. Writes nothing.
    fn stage(
        &self,
        held: Loaded,
        in_force: Arc<Store>,
        change: Change,
    ) -> BoxFuture<'static, Result<Staged, Error>>;

    /// Makes a staged change real: every write, or, when one fails, none (the
    /// writes already made are undone as far as the source allows).
    fn commit(&self, staged: Staged) -> BoxFuture<'static, Result<(), Error>>;

    /// Told after each validation of what the source holds: its problems and
    /// what is in force. A source that can show problems where its resources
    /// live (Kubernetes: their status) does so here, without blocking.
    fn report(&self, problems: Arc<[Problem]>, in_force: Arc<Store>) {
        let _ = (problems, in_force);
    }
}
