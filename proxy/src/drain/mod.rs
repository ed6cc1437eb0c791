//! Leaving the mesh without dropping a request.
//!
//! On SIGTERM (or `POST /shutdown`) the proxy goes through these phases, each
//! logged with the time since the drain began so the sequence can be measured:
//!
//! 1. [`Phase::Leaving`]: the xDS client tells the control plane this proxy is
//!    leaving (its node metadata says `draining: true`, on its own stream), the
//!    control plane withdraws its endpoint and pushes the change, and callers
//!    stop picking it. Inbound still accepts and serves for the propagation
//!    window, since a caller may not have the change yet; `/ready` answers 503
//!    and HTTP/1 responses carry `Connection: close`.
//! 2. [`Phase::ClosingInbound`]: inbound accepts nothing new; HTTP/1
//!    connections close after the response in flight, HTTP/2 ones get GOAWAY;
//!    the proxy waits for every inbound connection to end.
//! 3. [`Phase::Exiting`]: the app has answered everything it was asked, so
//!    its own calls are done too: outbound (which kept working throughout) and
//!    admin close last, then the process exits.
//!
//! The whole sequence is bounded by a hard cap (`drain.timeout_ms`).
//!
//! Not here: the listeners' accept loops (`accept::listener`) and the leave
//! request (`xds`); this module only holds the phase and drives it in time.

mod sequence;
mod settings;
mod state;

pub use sequence::sequence;
pub use settings::{
    RawSettings, Settings, SettingsError, DEFAULT_PROPAGATION, DEFAULT_TIMEOUT, MAX_TIMEOUT,
};
pub use state::{Drain, Phase};
