//! Host names a server certificate is valid for (DNS and IP SANs), for clients
//! that check the server by the name they dialled, as gRPC's TLS does.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::SanType;

/// A DNS name (lowercase, no wildcard) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostName {
    Dns(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a host name for a certificate: {reason}")]
pub struct InvalidHostName {
    pub name: String,
    pub reason: &'static str,
}

impl HostName {
    pub fn localhost() -> Self {
        HostName::Dns("localhost".to_owned())
    }

    /// The subject alternative name that carries it.
    pub fn san(&self) -> Result<SanType, rcgen::Error> {
        Ok(match self {
            HostName::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
            HostName::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

impl From<IpAddr> for HostName {
    fn from(ip: IpAddr) -> Self {
        HostName::Ip(ip)
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Dns(name) => f.write_str(name),
            HostName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for HostName {
    type Err = InvalidHostName;

    /// An IP address (IPv6 with or without brackets), else a DNS name: labels
    /// of letters, digits and '-' (not first or last), at most 63 bytes each
    /// and 253 in all, a last label that is not all digits (it would read as
    /// an address). Case is folded; one trailing dot is dropped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidHostName {
            name: s.to_owned(),
            reason,
        };
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostName::Ip(ip));
        }
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if name.is_empty() {
            return Err(err("it is empty"));
        }
        if name.len() > 253 {
            return Err(err("a DNS name has at most 253 characters"));
        }
        if name.contains('*') {
            return Err(err("wildcards are not accepted: give each name"));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(err("each label (between dots) has 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err(
                    "a DNS name has only letters, digits, '-' and '.' (or give an IP address)",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("a label may not start or end with '-'"));
            }
        }
        let last = name.rsplit('.').next().unwrap_or_default();
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "neither an IP address nor a DNS name (its last label is all digits)",
            ));
        }
        Ok(HostName::Dns(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_ip_addresses_and_dns_names_and_refuses_the_rest() {
        let ok = |s: &str| s.parse::<HostName>().unwrap();
        assert_eq!(ok("127.0.0.1"), HostName::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(ok("::1"), HostName::Ip("::1".parse().unwrap()));
        assert_eq!(ok("[fd00::7]"), HostName::Ip("fd00::7".parse().unwrap()));
        assert_eq!(ok("localhost"), HostName::localhost());
        assert_eq!(
            ok("Remora-Control.remora-system.svc."),
            HostName::Dns("remora-control.remora-system.svc".into())
        );
        let long_label = "a".repeat(64);
        let long_name = format!("{}com", "a.".repeat(130));
        for bad in [
            "",
            "*.example.com",
            "a..b",
            "-a.example",
            "a-.example",
            "under_score.example",
            "1.2.3",
            "host:7700",
            "http://host",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            let err = bad.parse::<HostName>().unwrap_err();
            assert_eq!(err.name, bad);
        }
    }

    #[test]
    fn says_what_it_is_and_becomes_a_san() {
        for s in ["xds.example.com", "10.0.0.7", "fd00::7"] {
            let host: HostName = s.parse().unwrap();
            assert_eq!(host.to_string(), s);
            assert!(host.san().is_ok(), "{s}");
        }
    }
}
