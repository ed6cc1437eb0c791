//! A proxy that names a Service the control plane does not know connects, gets
//! its outbound config, and never receives traffic: nothing says why. Each
//! stream watches the Service its proxy names and warns once when it connects
//! that way, again whenever the Service disappears, and says when it appears.

use super::registry::ProxyIdentity;
use crate::escape::escape_control as escape;
use crate::resources::ObjectKey;
use crate::store::Store;

/// Whether the Service one proxy names is defined, as last seen.
#[derive(Debug)]
pub struct ServiceWatch {
    node_id: String,
    /// `None` for a proxy that names no Service (a pure client).
    service: Option<ObjectKey>,
    known: Option<bool>,
}

impl ServiceWatch {
    pub fn new(identity: &ProxyIdentity) -> Self {
        ServiceWatch {
            node_id: identity.node_id.clone(),
            service: identity
                .service
                .as_ref()
                .map(|s| ObjectKey::new(identity.namespace.clone(), s.clone())),
            known: None,
        }
    }

    /// Looks at the Services in force. When that changes what to warn about,
    /// logs it and returns the warnings to show for the proxy.
    pub fn observe(&mut self, store: &Store) -> Option<Vec<String>> {
        let key = self.service.as_ref()?;
        let known = store.service(key).is_some();
        let before = self.known.replace(known);
        if before == Some(known) {
            return None;
        }
        let node_id = escape(&self.node_id);
        let key_text = key.to_string();
        let service = escape(&key_text);
        match (before, known) {
            (_, true) => {
                if before.is_some() {
                    tracing::info!(%node_id, %service, "the Service this proxy names is now defined: it becomes an endpoint");
                }
                Some(Vec::new())
            }
            (None, false) => {
                tracing::warn!(%node_id, %service, "proxy names a Service the control plane does not know: it gets no inbound listener and no traffic");
                Some(vec![unknown_service(key)])
            }
            (Some(_), false) => {
                tracing::warn!(%node_id, %service, "the Service this proxy names was removed: it gets no traffic any more");
                Some(vec![unknown_service(key)])
            }
        }
    }
}

/// The warning `/api/v1/proxies` shows.
pub fn unknown_service(key: &ObjectKey) -> String {
    format!(
        "Service {} is not defined on the control plane: this proxy gets no inbound listener and no traffic (define the Service, or correct `service`/`namespace` in the proxy's bootstrap)",
        escape(&key.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{EndpointAuthority, Service};

    fn identity(service: Option<&str>) -> ProxyIdentity {
        ProxyIdentity {
            node_id: "orders-1".into(),
            service: service.map(str::to_owned),
            namespace: "default".into(),
            inbound_address: None,
            identity: None,
            transport: "plaintext",
            remote: None,
        }
    }

    fn with_orders() -> Store {
        let orders = Service {
            key: ObjectKey::new("default", "orders"),
            ports: Vec::new(),
            endpoints: Vec::new(),
            tls: None,
            authority: EndpointAuthority::named_like("orders"),
            cluster_ip: None,
        };
        Store::new([orders], Vec::<crate::resources::HttpRoute>::new())
    }

    #[test]
    fn an_unknown_service_is_warned_about_once_per_change() {
        let mut watch = ServiceWatch::new(&identity(Some("orders")));
        let empty = Store::default();
        let warnings = watch.observe(&empty).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("Service default/orders is not defined"));
        assert_eq!(
            watch.observe(&empty),
            None,
            "no new warning for the same state"
        );
        assert_eq!(watch.observe(&with_orders()), Some(Vec::new()));
        assert_eq!(watch.observe(&with_orders()), None);
        // The Service disappears: warned again.
        assert_eq!(watch.observe(&empty).map(|w| w.len()), Some(1));
    }

    #[test]
    fn a_known_service_or_none_at_all_is_no_warning() {
        let mut watch = ServiceWatch::new(&identity(Some("orders")));
        assert_eq!(watch.observe(&with_orders()), Some(Vec::new()));
        let mut client = ServiceWatch::new(&identity(None));
        assert_eq!(client.observe(&Store::default()), None);
    }
}
