//! The xDS client: an ADS stream to the control plane that keeps the last good
//! snapshot published while the control plane is away.

mod apply;
mod client;
mod decode;
mod node;
mod restore;
mod status;

pub use crate::backoff::Backoff;
pub(crate) use apply::apply_response;
pub use client::XdsClient;
pub use node::node;
pub use status::{TypeStatus, XdsStatus};
