//! The control plane API's address as users give it: `127.0.0.1:7780`,
//! `localhost:7780`, or the URL the demo prints, `http://127.0.0.1:7780/`.

use std::fmt;
use std::str::FromStr;

/// Where the API listens: a host (name or IP) and a port. Plain HTTP only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAddr {
    /// Without brackets, also for IPv6.
    host: String,
    port: u16,
}

impl ApiAddr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ApiAddr {
            host: host.into(),
            port,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` (IPv6 in brackets), for the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl From<std::net::SocketAddr> for ApiAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        ApiAddr::new(addr.ip().to_string(), addr.port())
    }
}

impl fmt::Display for ApiAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority())
    }
}

impl FromStr for ApiAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let rest = match s.split_once("://") {
            None => s,
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(format!(
                    "`{s}`: the API speaks plain HTTP; give http://HOST:PORT or HOST:PORT"
                ))
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "`{s}`: unknown scheme `{scheme}`; give http://HOST:PORT or HOST:PORT"
                ))
            }
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{s}`: give the API's address, HOST:PORT, without a path"
            ));
        }
        if let Ok(addr) = rest.parse::<std::net::SocketAddr>() {
            return Ok(addr.into());
        }
        let no_port =
            || format!("`{s}`: give a port, HOST:PORT (the API's default is 127.0.0.1:7780)");
        let (host, port) = rest.rsplit_once(':').ok_or_else(no_port)?;
        let port: u16 = port.parse().map_err(|_| no_port())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{s}`: give a host, HOST:PORT"));
        }
        Ok(ApiAddr::new(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, String> {
        s.parse::<ApiAddr>().map(|a| a.authority())
    }

    #[test]
    fn takes_an_address_or_the_url_the_demo_prints() {
        assert_eq!(parse("127.0.0.1:7780").as_deref(), Ok("127.0.0.1:7780"));
        assert_eq!(
            parse("http://127.0.0.1:7780").as_deref(),
            Ok("127.0.0.1:7780")
        );
        assert_eq!(
            parse("http://127.0.0.1:7780/").as_deref(),
            Ok("127.0.0.1:7780")
        );
        assert_eq!(parse("localhost:7780").as_deref(), Ok("localhost:7780"));
        assert_eq!(parse("http://[::1]:7780").as_deref(), Ok("[::1]:7780"));
        assert_eq!(parse("[::1]:7780").as_deref(), Ok("[::1]:7780"));
    }

    #[test]
    fn refuses_what_it_cannot_reach() {
        for bad in [
            "https://127.0.0.1:7780",
            "ftp://a:1",
            "127.0.0.1",
            "http://127.0.0.1:7780/api/v1",
            ":7780",
            "host:http",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_as_a_url() {
        let a: ApiAddr = "127.0.0.1:7780".parse().unwrap();
        assert_eq!(a.to_string(), "http://127.0.0.1:7780");
    }
}
