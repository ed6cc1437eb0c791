//! Transparent interception: what the proxy needs when iptables, not the
//! application, sent a connection to it.
//!
//! - [`orig_dst`]: the address a redirected connection was meant for
//!   (`SO_ORIGINAL_DST`), or `None` when it came to the proxy directly.
//!
//! Not here: the redirect rules themselves, which `remora-proxy init` installs
//! before the proxy starts ([`crate::init`]).

pub mod orig_dst;

pub use orig_dst::original_dst;
