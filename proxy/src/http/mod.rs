//! The HTTP request path: accept, serve HTTP/1 and HTTP/2, and the outbound and
//! inbound handlers. The outbound path is a stack of layers (`outbound/`: route,
//! filters, breaker, mirror, hash, timeout, retry, balance, endpoint).

mod app_clients;
mod body;
mod connect;
mod headers;
mod inbound;
mod limits;
mod outbound;
mod reply;
pub(crate) mod server;
pub(crate) mod target_port;
mod upgrade;

pub use body::ResponseBody;
pub(crate) use headers::{parse_version, strip_hop_by_hop, version_name};
pub use inbound::Inbound;
pub(crate) use outbound::hash_key;
pub use outbound::Outbound;
pub use server::{
    accept, ConnectionInfo, DefaultAuthority, Handler, HttpServer, InboundStats, ListenerLimits,
    MeshAccept, OriginalDestination, PeerIdentity, Plaintext, Remote,
};

/// Carries the app's original protocol across the HTTP/2 hop between proxies, so the
/// far side talks to its app the way the calling app talked to us.
pub const ORIG_PROTO: http::HeaderName = http::HeaderName::from_static("remora-orig-proto");
/// The app port a request between proxies is for (the Service port's
/// `targetPort`): the far proxy serves every port of its Service on one
/// listener. Taken only from a verified mesh peer, and only for a port its
/// Service lists; removed from what the app sends and from what the far app sees.
pub const TARGET_PORT: http::HeaderName = http::HeaderName::from_static("remora-target-port");
/// The caller's SPIFFE id, set by the inbound proxy from the verified client
/// certificate (any value the caller sent is removed first).
pub const CLIENT_ID: http::HeaderName = http::HeaderName::from_static("remora-client-id");
/// Says why the proxy answered a request itself.
pub const ERROR_HEADER: http::HeaderName = http::HeaderName::from_static("remora-error");

pub use crate::grpc::{grpc_status, is_grpc};
