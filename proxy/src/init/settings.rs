//! The checked form of `remora-proxy init`'s flags: ports in 1-65535, CIDRs that
//! parse, no two listeners on one port.
//!
//! Everything a user can get wrong is caught here, before any rule is written, and
//! the error names the flag and the value. Lists are kept in the order given with
//! repeats dropped, so the rules (and the golden tests) are stable.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::args::InitArgs;

/// What the rules are built from (see [`super::rules`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub proxy_uid: u32,
    pub proxy_gid: Option<u32>,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub admin_port: u16,
    pub skip_inbound_ports: Vec<u16>,
    pub skip_outbound_ports: Vec<u16>,
    pub skip_outbound_cidrs: Vec<Cidr>,
    pub include_inbound_ports: InboundPorts,
}

/// Which inbound ports are redirected to the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundPorts {
    /// Every port not skipped (`*`, the default).
    All,
    /// Only these (none when empty).
    Only(Vec<u16>),
}

/// A flag whose value is not what it should be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{flag}: `{value}` is not a port (a number from 1 to 65535)")]
    Port { flag: &'static str, value: String },
    #[error(
        "{flag}: `{value}` is not a CIDR (address/prefix, e.g. 10.0.0.0/8 or fd00::/8): {reason}"
    )]
    Cidr {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("{first} and {second} are both {port}: the proxy's listeners need a port each")]
    SamePort {
        first: &'static str,
        second: &'static str,
        port: u16,
    },
}

impl Settings {
    /// Checks every flag; the first mistake is the error.
    pub fn from_args(args: &InitArgs) -> Result<Self, SettingsError> {
        let outbound_port = port("--outbound-port", &args.outbound_port)?;
        let inbound_port = port("--inbound-port", &args.inbound_port)?;
        let admin_port = port("--admin-port", &args.admin_port)?;
        let listeners = [
            ("--outbound-port", outbound_port),
            ("--inbound-port", inbound_port),
            ("--admin-port", admin_port),
        ];
        for (i, &(first, a)) in listeners.iter().enumerate() {
            if let Some(&(second, _)) = listeners[i + 1..].iter().find(|(_, b)| *b == a) {
                return Err(SettingsError::SamePort {
                    first,
                    second,
                    port: a,
                });
            }
        }
        let include_inbound_ports = match args.include_inbound_ports.trim() {
            "*" => InboundPorts::All,
            list => InboundPorts::Only(ports("--include-inbound-ports", list)?),
        };
        Ok(Self {
            proxy_uid: args.proxy_uid,
            proxy_gid: args.proxy_gid,
            outbound_port,
            inbound_port,
            admin_port,
            skip_inbound_ports: ports("--skip-inbound-ports", &args.skip_inbound_ports)?,
            skip_outbound_ports: ports("--skip-outbound-ports", &args.skip_outbound_ports)?,
            skip_outbound_cidrs: cidrs("--skip-outbound-cidrs", &args.skip_outbound_cidrs)?,
            include_inbound_ports,
        })
    }
}

fn port(flag: &'static str, value: &str) -> Result<u16, SettingsError> {
    match value.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(SettingsError::Port {
            flag,
            value: value.to_owned(),
        }),
    }
}

/// A comma-separated list; blank items (a trailing comma) are ignored.
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn ports(flag: &'static str, list: &str) -> Result<Vec<u16>, SettingsError> {
    let mut ports = Vec::new();
    for item in items(list) {
        push_new(&mut ports, port(flag, item)?);
    }
    Ok(ports)
}

fn cidrs(flag: &'static str, list: &str) -> Result<Vec<Cidr>, SettingsError> {
    let mut cidrs = Vec::new();
    for item in items(list) {
        let cidr = item.parse::<Cidr>().map_err(|reason| SettingsError::Cidr {
            flag,
            value: item.to_owned(),
            reason,
        })?;
        push_new(&mut cidrs, cidr);
    }
    Ok(cidrs)
}

/// Appends `item` unless it is there already (lists are short).
pub(super) fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// An address range, `address/prefix`, with the host bits cleared (as iptables
/// stores it: `10.1.2.3/8` is `10.0.0.0/8`). A bare address is one host (`/32`
/// or `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl FromStr for Cidr {
    /// Why it is not a CIDR.
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    format!("the prefix length `{prefix}` is not a number from 0 to {max}")
                })?,
        };
        let addr = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
impl Settings {
    /// The settings `remora-proxy init FLAGS` would use (flags clap accepts).
    pub(crate) fn from_flags(flags: &[&str]) -> Result<Self, SettingsError> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            init: InitArgs,
        }
        let argv = std::iter::once("init").chain(flags.iter().copied());
        let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("flags clap accepts");
        Self::from_args(&cli.init)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(flags: &[&str]) -> String {
        Settings::from_flags(flags).unwrap_err().to_string()
    }

    #[test]
    fn the_defaults_are_the_design_s_ports() {
        let settings = Settings::from_flags(&[]).unwrap();
        assert_eq!(settings.proxy_uid, 1337);
        assert_eq!(settings.proxy_gid, None);
        assert_eq!(settings.outbound_port, 7001);
        assert_eq!(settings.inbound_port, 7002);
        assert_eq!(settings.admin_port, 7900);
        assert_eq!(settings.include_inbound_ports, InboundPorts::All);
        assert!(settings.skip_inbound_ports.is_empty());
        assert!(settings.skip_outbound_ports.is_empty());
        assert!(settings.skip_outbound_cidrs.is_empty());
    }

    #[test]
    fn lists_keep_their_order_and_drop_repeats_and_blanks() {
        let settings = Settings::from_flags(&[
            "--skip-inbound-ports",
            " 22, 9100,22,",
            "--include-inbound-ports",
            "8080,80",
        ])
        .unwrap();
        assert_eq!(settings.skip_inbound_ports, [22, 9100]);
        assert_eq!(
            settings.include_inbound_ports,
            InboundPorts::Only(vec![8080, 80])
        );
    }

    #[test]
    fn an_empty_include_list_redirects_no_inbound_port() {
        let settings = Settings::from_flags(&["--include-inbound-ports", ""]).unwrap();
        assert_eq!(settings.include_inbound_ports, InboundPorts::Only(vec![]));
    }

    #[test]
    fn a_bad_port_names_the_flag_and_the_value() {
        for (flag, value) in [
            ("--outbound-port", "0"),
            ("--inbound-port", "65536"),
            ("--admin-port", "http"),
            ("--skip-inbound-ports", "22,-1"),
            ("--skip-outbound-ports", "5432,99999"),
            ("--include-inbound-ports", "80,all"),
        ] {
            let message = error(&[flag, value]);
            assert!(message.starts_with(&format!("{flag}: `")), "{message}");
            assert!(message.contains("is not a port"), "{message}");
        }
        assert_eq!(
            error(&["--skip-outbound-ports", "5432,99999"]),
            "--skip-outbound-ports: `99999` is not a port (a number from 1 to 65535)"
        );
    }

    #[test]
    fn two_listeners_on_one_port_are_refused() {
        assert_eq!(
            error(&["--inbound-port", "7001"]),
            "--outbound-port and --inbound-port are both 7001: the proxy's listeners need a port each"
        );
        assert_eq!(
            error(&["--admin-port", "7002"]),
            "--inbound-port and --admin-port are both 7002: the proxy's listeners need a port each"
        );
    }

    #[test]
    fn a_bad_cidr_names_the_flag_the_value_and_the_reason() {
        for (value, reason) in [
            (
                "10.0.0.0/33",
                "the prefix length `33` is not a number from 0 to 32",
            ),
            (
                "fd00::/129",
                "the prefix length `129` is not a number from 0 to 128",
            ),
            (
                "10.0.0.0/",
                "the prefix length `` is not a number from 0 to 32",
            ),
            ("10.0.0/8", "`10.0.0` is not an IPv4 or IPv6 address"),
            ("/8", "`` is not an IPv4 or IPv6 address"),
            (
                "example.com/32",
                "`example.com` is not an IPv4 or IPv6 address",
            ),
        ] {
            assert_eq!(
                error(&["--skip-outbound-cidrs", &format!("192.168.0.0/16,{value}")]),
                format!(
                    "--skip-outbound-cidrs: `{value}` is not a CIDR (address/prefix, \
                     e.g. 10.0.0.0/8 or fd00::/8): {reason}"
                )
            );
        }
    }

    #[test]
    fn cidrs_clear_their_host_bits_as_iptables_does() {
        let cidr = |text: &str| text.parse::<Cidr>().unwrap().to_string();
        assert_eq!(cidr("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3"), "10.1.2.3/32");
        assert_eq!(cidr("10.1.2.3/0"), "0.0.0.0/0");
        assert_eq!(cidr("fd00:1:2::3/16"), "fd00::/16");
        assert_eq!(cidr("fd00::1"), "fd00::1/128");
        assert_eq!(cidr("::/0"), "::/0");
    }
}
