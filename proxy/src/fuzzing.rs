//! Entry points for the fuzz targets in `fuzz/` (not an API): the private
//! parsers the targets exercise, reached through thin wrappers so the targets run
//! exactly the code the proxy runs.

use http::{HeaderMap, HeaderValue, Version};
use remora_proto::xds::google::protobuf::Any;

use crate::compile::{CompileError, Resources};
use crate::snapshot::{HashPolicy, Snapshot};
use crate::upstream::EndpointRegistry;

/// One ADS response of type `type_url` applied to the `accepted` resources as
/// the xDS client applies it: the resources and snapshot it keeps, or the
/// rejection it NACKs.
pub fn apply_response(
    accepted: &Resources,
    type_url: &'static str,
    version: &str,
    resources: &[Any],
    registry: &EndpointRegistry,
) -> Result<(Resources, Snapshot), CompileError> {
    crate::xds::apply_response(accepted, type_url, version, resources, registry)
}

/// Removes the hop-by-hop headers, and those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    crate::http::strip_hop_by_hop(headers);
}

/// The `remora-orig-proto` header's value as an HTTP version.
pub fn parse_version(value: &[u8]) -> Option<Version> {
    crate::http::parse_version(value)
}

/// What `parse_version` reads back.
pub fn version_name(version: Version) -> &'static str {
    crate::http::version_name(version)
}

/// A request's consistent-hashing key (a header, or a cookie out of `Cookie`)
/// under `policy`, and the `Set-Cookie` to answer with.
pub fn hash_key(policy: &HashPolicy, headers: &HeaderMap) -> (Option<u64>, Option<HeaderValue>) {
    crate::http::hash_key(Some(policy), headers)
}
