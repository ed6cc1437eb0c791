//! Whether the service a stat query names exists at all, so that a typo says
//! so instead of showing an empty table.

use std::collections::BTreeSet;

use super::stat::{Filter, ServiceRef};
use super::store::NodeReports;

/// Services listed in the answer to an unknown one, at most.
const LISTED: usize = 20;

/// `Some(message)` when `filter` names a service (in its namespace, if it
/// gives one) that neither the config (`defined`) nor any proxy's report
/// knows; `None` when it names none or a known one.
pub fn unknown_service(
    filter: &Filter,
    defined: impl IntoIterator<Item = ServiceRef>,
    nodes: &[NodeReports],
) -> Option<String> {
    let wanted = filter.service.as_ref()?;
    let mut known: BTreeSet<ServiceRef> = defined.into_iter().collect();
    for report in nodes.iter().filter_map(|n| n.reports.back()) {
        known.insert(ServiceRef {
            service: report.service.clone(),
            namespace: report.namespace.clone(),
        });
        for hop in &report.hops {
            for (service, namespace) in [
                (&hop.destination_service, &hop.destination_namespace),
                (&hop.parent_service, &hop.parent_namespace),
            ] {
                if !service.is_empty() {
                    known.insert(ServiceRef {
                        service: service.clone(),
                        namespace: namespace.clone(),
                    });
                }
            }
        }
    }
    if known.iter().any(|k| filter.matches(k)) {
        return None;
    }
    let place = filter
        .namespace
        .as_ref()
        .map_or(String::new(), |ns| format!(" in namespace {ns}"));
    let names: Vec<String> = known
        .iter()
        .take(LISTED)
        .map(|k| format!("{}.{}", k.service, k.namespace))
        .collect();
    let more = if known.len() > LISTED { ", ..." } else { "" };
    let listed = if names.is_empty() {
        "no Service is defined or reported yet".to_owned()
    } else {
        format!("known: {}{more}", names.join(", "))
    };
    Some(format!("unknown service `{wanted}`{place} ({listed})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> ServiceRef {
        ServiceRef {
            service: name.into(),
            namespace: "default".into(),
        }
    }

    fn filter(service: &str, namespace: Option<&str>) -> Filter {
        Filter {
            service: Some(service.into()),
            namespace: namespace.map(str::to_owned),
        }
    }

    #[test]
    fn a_service_nobody_knows_is_unknown() {
        let defined = || vec![service("orders"), service("web")];
        assert_eq!(
            unknown_service(&filter("orders", None), defined(), &[]),
            None
        );
        assert_eq!(
            unknown_service(&Filter::default(), defined(), &[]),
            None,
            "no service asked for"
        );
        let message = unknown_service(&filter("nosuch", None), defined(), &[]).unwrap();
        assert_eq!(
            message,
            "unknown service `nosuch` (known: orders.default, web.default)"
        );
        let elsewhere = unknown_service(&filter("orders", Some("shop")), defined(), &[]).unwrap();
        assert!(elsewhere.contains("in namespace shop"), "{elsewhere}");
    }
}
