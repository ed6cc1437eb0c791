//! The accepted resources as the state dir keeps them, and back. A restart
//! replays what was accepted, one type at a time in the order the control plane
//! pushes, through the apply-and-compile that handles a response: what was
//! saved compiles (or is refused) exactly as it did when it arrived.

use remora_proto::type_url::PUSH_ORDER;

use super::apply::apply_response;
use crate::compile::{CompileError, Resources};
use crate::snapshot::Snapshot;
use crate::state::{SavedConfig, SavedType};
use crate::upstream::EndpointRegistry;

/// Every accepted type's resources and version, to save.
pub(crate) fn to_saved(accepted: &Resources) -> Vec<SavedType> {
    PUSH_ORDER
        .into_iter()
        .filter_map(|t| {
            let version = accepted.versions.get(t)?;
            let resources = match t {
                remora_proto::type_url::CLUSTER => &accepted.clusters,
                remora_proto::type_url::ENDPOINT => &accepted.endpoints,
                remora_proto::type_url::LISTENER => &accepted.listeners,
                _ => &accepted.routes,
            };
            Some(SavedType {
                type_url: t.to_owned(),
                version: version.clone(),
                resources: resources.values().cloned().collect(),
            })
        })
        .collect()
}

/// The accepted resources and the snapshot a saved config gives, `None` when it
/// holds no type this proxy consumes.
pub(crate) fn from_saved(
    saved: &SavedConfig,
    registry: &EndpointRegistry,
) -> Result<Option<(Resources, Snapshot)>, CompileError> {
    let mut accepted = Resources::default();
    let mut snapshot = None;
    for t in PUSH_ORDER {
        let Some(s) = saved.types.iter().find(|s| s.type_url == t) else {
            continue;
        };
        let (next, compiled) = apply_response(&accepted, t, &s.version, &s.resources, registry)?;
        accepted = next;
        snapshot = Some(compiled);
    }
    Ok(snapshot.map(|s| (accepted, s)))
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
