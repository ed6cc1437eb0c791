//! The flags of `remora-proxy init`, each with a `REMORA_INIT_*` environment
//! variable (an init container is easier to configure by environment).
//!
//! Ports, port lists and CIDRs arrive as text and are checked by
//! [`super::settings::Settings::from_args`], so every mistake is reported the same
//! way: the flag, the value, and what is wrong with it.

use clap::{ArgAction, Args};

/// Shown after `--help`.
const EXAMPLE: &str = "\
Example (a pod's init container; SSH and the database stay out of the mesh):
  remora-proxy init --proxy-uid 1337 --skip-inbound-ports 22 \\
      --skip-outbound-ports 5432 --skip-outbound-cidrs 169.254.169.254/32

See what it would install, changing nothing:
  remora-proxy init --dry-run

Take the rules out again:
  remora-proxy init --remove";

/// Redirect this network namespace's TCP traffic to the proxy (iptables)
///
/// Installs nat table rules in the current network namespace (a pod's, when run
/// as its init container): TCP connections the application makes go to the
/// outbound listener, TCP connections from outside go to the inbound listener, and
/// the proxy reads where each was going with SO_ORIGINAL_DST.
///
/// Not redirected: the proxy's own connections (by uid, and gid if given),
/// loopback, the skipped ports and CIDRs, and connections to the proxy's own ports
/// (admin, inbound, outbound).
///
/// The rules live in chains of their own (REMORA_INBOUND, REMORA_IN_REDIRECT,
/// REMORA_OUTPUT, REMORA_OUT_REDIRECT), installed by one iptables-restore
/// --noflush per address family, so a failure leaves nothing half-done and
/// running it again leaves the same rules. Afterwards iptables-save is read back
/// to check that the chains hold exactly what was written.
///
/// Needs the NET_ADMIN and NET_RAW capabilities (nothing else, and no root
/// filesystem access), and iptables-restore, iptables-save, ip6tables-restore and
/// ip6tables-save on the PATH. --dry-run needs none of these.
#[derive(Args, Clone, Debug)]
#[command(verbatim_doc_comment, after_help = EXAMPLE)]
pub struct InitArgs {
    /// The proxy's uid: its own connections are never redirected.
    #[arg(long, env = "REMORA_INIT_PROXY_UID", default_value_t = 1337)]
    pub proxy_uid: u32,

    /// The proxy's gid: connections from this group are never redirected either.
    #[arg(long, env = "REMORA_INIT_PROXY_GID")]
    pub proxy_gid: Option<u32>,

    /// The proxy's outbound listener: where the application's connections go.
    #[arg(long, env = "REMORA_INIT_OUTBOUND_PORT", default_value = "7001")]
    pub outbound_port: String,

    /// The proxy's inbound listener: where connections from outside go.
    #[arg(long, env = "REMORA_INIT_INBOUND_PORT", default_value = "7002")]
    pub inbound_port: String,

    /// The proxy's admin port: reached directly, never redirected.
    #[arg(long, env = "REMORA_INIT_ADMIN_PORT", default_value = "7900")]
    pub admin_port: String,

    /// Inbound ports left alone, comma-separated (e.g. 22,9100).
    #[arg(long, env = "REMORA_INIT_SKIP_INBOUND_PORTS", default_value = "")]
    pub skip_inbound_ports: String,

    /// Outbound destination ports left alone, comma-separated (e.g. 5432).
    #[arg(long, env = "REMORA_INIT_SKIP_OUTBOUND_PORTS", default_value = "")]
    pub skip_outbound_ports: String,

    /// Outbound destinations left alone, comma-separated CIDRs, IPv4 and IPv6
    /// (e.g. 169.254.169.254/32,fd00::/8).
    #[arg(long, env = "REMORA_INIT_SKIP_OUTBOUND_CIDRS", default_value = "")]
    pub skip_outbound_cidrs: String,

    /// Inbound ports redirected to the proxy, comma-separated; * for all of them,
    /// an empty value for none.
    #[arg(long, env = "REMORA_INIT_INCLUDE_INBOUND_PORTS", default_value = "*")]
    pub include_inbound_ports: String,

    /// Also write the IPv6 rules (ip6tables). false on nodes without IPv6.
    #[arg(long, env = "REMORA_INIT_IPV6", default_value_t = true, action = ArgAction::Set)]
    pub ipv6: bool,

    /// Print the iptables-restore text that would be applied (IPv4, then IPv6)
    /// and change nothing.
    #[arg(long, env = "REMORA_INIT_DRY_RUN")]
    pub dry_run: bool,

    /// Delete Remora's chains and the jumps to them, instead of installing them.
    #[arg(long, env = "REMORA_INIT_REMOVE")]
    pub remove: bool,
}
