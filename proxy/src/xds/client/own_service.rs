//! A proxy whose Service the control plane does not know gets its outbound
//! config and no inbound listener, and no caller is ever sent to it. It says so:
//! a warning in the log when that starts, and in `/ready` and `/config_dump`
//! while it lasts.

use super::XdsClient;
use crate::xds::node;

impl XdsClient {
    /// After each response: whether the config, once complete, has an inbound
    /// listener for this proxy's Service.
    pub(super) fn observe_own_service(&self) {
        let snapshot = self.snapshot.load();
        if !snapshot.is_ready() {
            return;
        }
        let service = node::field(&self.node, "service").unwrap_or_default();
        let namespace = node::field(&self.node, "namespace").unwrap_or_default();
        let warning = snapshot.inbound.is_none().then(|| {
            format!(
                "the control plane sent no inbound listener for Service {namespace}/{service}: it does not know the Service, so no caller is sent to this proxy (define the Service, or correct `service`/`namespace` in the bootstrap)"
            )
        });
        let missing = warning.is_some();
        let before = self.status.set_service_warning(warning);
        match (before.is_some(), missing) {
            (false, true) => tracing::warn!(
                service,
                namespace,
                "the control plane sent no inbound listener for this proxy's Service: it gets no traffic (is the Service defined?)"
            ),
            (true, false) => tracing::info!(
                service,
                namespace,
                "the inbound listener for this proxy's Service arrived"
            ),
            _ => {}
        }
    }
}
