//! SPIFFE workload identities: `spiffe://<trust-domain>/ns/<namespace>/sa/<account>`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{id}` is not a workload identity: {reason}")]
pub struct InvalidSpiffeId {
    pub id: String,
    pub reason: &'static str,
}

impl SpiffeId {
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, InvalidSpiffeId> {
        format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}").parse()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = InvalidSpiffeId;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidSpiffeId {
            id: id.to_owned(),
            reason,
        };
        let rest = id
            .strip_prefix("spiffe://")
            .ok_or_else(|| err("it must start with spiffe://"))?;
        let (trust_domain, path) = rest.split_once('/').ok_or_else(|| err("it has no path"))?;
        // SPIFFE: trust domains are lowercase letters, digits, '.', '-' and '_'.
        let domain_ok = !trust_domain.is_empty()
            && trust_domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !domain_ok {
            return Err(err(
                "the trust domain must be lowercase letters, digits, '.', '-' or '_'",
            ));
        }
        let segments: Vec<&str> = path.split('/').collect();
        let [ns_key, namespace, sa_key, service_account] = segments[..] else {
            return Err(err("the path must be /ns/<namespace>/sa/<service-account>"));
        };
        if ns_key != "ns" || sa_key != "sa" {
            return Err(err("the path must be /ns/<namespace>/sa/<service-account>"));
        }
        if !is_dns_label(namespace) || !is_dns_subdomain(service_account) {
            return Err(err(
                "namespace and service account must be lowercase DNS names",
            ));
        }
        Ok(SpiffeId {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        })
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_what_is_not_a_workload() {
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/orders".parse().unwrap();
        assert_eq!(
            id,
            SpiffeId::new("cluster.local", "shop", "orders").unwrap()
        );
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/orders");
        for bad in [
            "https://cluster.local/ns/shop/sa/orders",
            "spiffe://cluster.local",
            "spiffe://Cluster.Local/ns/shop/sa/orders",
            "spiffe://cluster.local/ns/shop/orders",
            "spiffe://cluster.local/ns/shop/sa/orders/extra",
            "spiffe://cluster.local/ns/Shop/sa/orders",
            "spiffe://cluster.local/ns//sa/orders",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }
}
