//! The xDS client: an ADS stream to the control plane that keeps the last good
//! snapshot published while the control plane is away.

mod client;
mod decode;
mod node;
mod status;

pub use crate::backoff::Backoff;
pub(crate) use client::apply_response;
pub use client::XdsClient;
pub use node::node;
pub use status::{TypeStatus, XdsStatus};
