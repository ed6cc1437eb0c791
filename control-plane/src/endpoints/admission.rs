//! Whether a registering proxy may be an endpoint of the Service it names,
//! against the Service as it is now (endpoint authority, see
//! [`crate::authority`]).

use crate::authority::{self, Refusal};
use crate::store::Store;
use crate::translate::MeshEndpoint;

/// What admission decided for a registration it did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The Service admits it.
    Admitted,
    /// The Service is not defined (yet): the proxy is served, and translation
    /// checks its endpoint once the Service appears. Until then it gets no
    /// traffic, which operators are warned about.
    UnknownService,
}

/// Endpoint authority for `endpoint` against the Services in `store`, in
/// `trust_domain`. A refusal names the identity (or address) and the Service.
pub fn admit(
    store: &Store,
    trust_domain: &str,
    endpoint: &MeshEndpoint,
) -> Result<Admission, Refusal> {
    let Some(service) = store.service(&endpoint.service) else {
        return Ok(Admission::UnknownService);
    };
    let claim = authority::Claim {
        identity: endpoint.identity.as_deref(),
        address: endpoint.address,
        peer: endpoint.peer,
        origin: endpoint.origin,
    };
    authority::check(service, trust_domain, claim)?;
    Ok(Admission::Admitted)
}
