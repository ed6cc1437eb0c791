//! The redirect rules as `iptables-restore` text: settings in, text out, no I/O.
//!
//! One set per address family, all in the `nat` table:
//!
//! ```text
//! PREROUTING -p tcp -j REMORA_INBOUND       connections arriving from outside
//!   REMORA_INBOUND       RETURN: skipped ports, the admin, inbound and outbound ports
//!                        then the included ports (all by default) -> REMORA_IN_REDIRECT
//!   REMORA_IN_REDIRECT   REDIRECT --to-ports <inbound>
//! OUTPUT -p tcp -j REMORA_OUTPUT            connections made in the namespace
//!   REMORA_OUTPUT        RETURN: the proxy's uid (and gid), loopback, skipped CIDRs
//!                        and ports; the rest -> REMORA_OUT_REDIRECT
//!   REMORA_OUT_REDIRECT  REDIRECT --to-ports <outbound>
//! ```
//!
//! Why each exception: the proxy's own connections leave through `OUTPUT` too and
//! would loop back into it without the uid rule; traffic addressed to the proxy's
//! ports must reach them as sent; loopback (`-o lo`, which also carries the
//! application's connections to its own pod IP) stays between local processes.
//!
//! Every rule is spelled the way `iptables-save` prints it back (`-m tcp` before
//! `--dport`, CIDRs with the host bits cleared, no `-d` for a `/0`), so
//! [`super::apply`] can check the kernel's copy against what was written. The text
//! declares our chains first, which under `iptables-restore --noflush` creates
//! them or empties them, then fills them; the jumps from `PREROUTING` and `OUTPUT`
//! are added only where missing ([`JumpCounts`]). So one run and two runs leave the
//! same rules, and each family is one `iptables-restore` transaction.

use super::settings::{push_new, InboundPorts, Settings};

pub const INBOUND: &str = "REMORA_INBOUND";
pub const IN_REDIRECT: &str = "REMORA_IN_REDIRECT";
pub const OUTPUT: &str = "REMORA_OUTPUT";
pub const OUT_REDIRECT: &str = "REMORA_OUT_REDIRECT";

/// Our chains, in the order they are declared and deleted.
pub const CHAINS: [&str; 4] = [INBOUND, IN_REDIRECT, OUTPUT, OUT_REDIRECT];

/// The jumps from the built-in chains into ours.
pub const JUMPS: [Jump; 2] = [
    Jump {
        from: "PREROUTING",
        spec: "-p tcp -j REMORA_INBOUND",
    },
    Jump {
        from: "OUTPUT",
        spec: "-p tcp -j REMORA_OUTPUT",
    },
];

/// A rule in a built-in chain that sends TCP into one of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jump {
    /// The built-in chain.
    pub from: &'static str,
    /// The rule's match and target, as `iptables-save` prints them.
    pub spec: &'static str,
}

impl Jump {
    /// The `-A` line, as `iptables-save` prints it.
    pub fn rule(&self) -> String {
        format!("-A {} {}", self.from, self.spec)
    }

    fn delete(&self) -> String {
        format!("-D {} {}", self.from, self.spec)
    }
}

/// How many times each of [`JUMPS`] is in the table already, in the same order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JumpCounts(pub [usize; 2]);

impl JumpCounts {
    /// A namespace init never ran in.
    pub const NONE: Self = Self([0, 0]);
    /// A namespace init ran in.
    pub const ONCE: Self = Self([1, 1]);
}

/// IPv4 (`iptables`) or IPv6 (`ip6tables`): separate tables, separate rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    pub fn restore_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    pub fn save_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }
}

/// One family's rules for our chains: `-A CHAIN ...` lines, chain by chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub family: Family,
    pub rules: Vec<String>,
}

impl RuleSet {
    pub fn new(settings: &Settings, family: Family) -> Self {
        let mut rules = Vec::new();
        let mut rule = |chain: &str, spec: String| rules.push(format!("-A {chain} {spec}"));
        let dport = |port: u16| format!("-p tcp -m tcp --dport {port}");

        // Inbound: what is addressed to the proxy, or skipped, is left alone.
        let mut returned = settings.skip_inbound_ports.clone();
        for port in [
            settings.admin_port,
            settings.inbound_port,
            settings.outbound_port,
        ] {
            push_new(&mut returned, port);
        }
        for &port in &returned {
            rule(INBOUND, format!("{} -j RETURN", dport(port)));
        }
        match &settings.include_inbound_ports {
            InboundPorts::All => rule(INBOUND, format!("-p tcp -j {IN_REDIRECT}")),
            InboundPorts::Only(ports) => {
                for &port in ports.iter().filter(|p| !returned.contains(p)) {
                    rule(INBOUND, format!("{} -j {IN_REDIRECT}", dport(port)));
                }
            }
        }
        rule(
            IN_REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {}", settings.inbound_port),
        );

        // Outbound: the proxy's own connections, loopback and skips are left alone.
        rule(
            OUTPUT,
            format!("-m owner --uid-owner {} -j RETURN", settings.proxy_uid),
        );
        if let Some(gid) = settings.proxy_gid {
            rule(OUTPUT, format!("-m owner --gid-owner {gid} -j RETURN"));
        }
        rule(OUTPUT, "-o lo -j RETURN".to_owned());
        rule(OUTPUT, format!("-d {} -j RETURN", family.loopback()));
        let of_family = |ipv4: bool| ipv4 == (family == Family::V4);
        for cidr in settings
            .skip_outbound_cidrs
            .iter()
            .filter(|c| of_family(c.is_ipv4()))
        {
            // iptables-save leaves out a match on every address.
            match cidr.prefix() {
                0 => rule(OUTPUT, "-j RETURN".to_owned()),
                _ => rule(OUTPUT, format!("-d {cidr} -j RETURN")),
            }
        }
        for &port in &settings.skip_outbound_ports {
            rule(OUTPUT, format!("{} -j RETURN", dport(port)));
        }
        rule(OUTPUT, format!("-p tcp -j {OUT_REDIRECT}"));
        rule(
            OUT_REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {}", settings.outbound_port),
        );

        Self { family, rules }
    }

    /// The rules of one of our chains, in order.
    pub fn chain(&self, chain: &str) -> Vec<&str> {
        self.rules
            .iter()
            .map(String::as_str)
            .filter(|rule| chain_of(rule) == Some(chain))
            .collect()
    }

    /// The text for `iptables-restore --noflush` that leaves exactly these rules
    /// and one of each jump, given how many jumps the table holds already.
    pub fn install_text(&self, jumps: JumpCounts) -> String {
        let mut text = header();
        for rule in &self.rules {
            line(&mut text, rule);
        }
        for (jump, count) in JUMPS.iter().zip(jumps.0) {
            if count == 0 {
                line(&mut text, &jump.rule());
            }
            for _ in 1..count {
                line(&mut text, &jump.delete());
            }
        }
        line(&mut text, "COMMIT");
        text
    }
}

/// The text for `iptables-restore --noflush` that deletes the jumps and our
/// chains. Declaring a chain empties it (or creates it, so deleting it cannot
/// fail when it was not there).
pub fn remove_text(jumps: JumpCounts) -> String {
    let mut text = header();
    for (jump, count) in JUMPS.iter().zip(jumps.0) {
        for _ in 0..count {
            line(&mut text, &jump.delete());
        }
    }
    for chain in CHAINS {
        line(&mut text, &format!("-X {chain}"));
    }
    line(&mut text, "COMMIT");
    text
}

/// What `--dry-run` prints: each family's text under a comment (which
/// `iptables-restore` ignores), as for a namespace init never ran in.
pub fn dry_run_text(sets: &[RuleSet]) -> String {
    let mut text = String::new();
    for set in sets {
        let family = set.family;
        text += &format!(
            "# remora-proxy init: the {} rules, for `{} --noflush`\n",
            family.name(),
            family.restore_command()
        );
        text += &set.install_text(JumpCounts::NONE);
    }
    text
}

/// What `--remove --dry-run` prints, as for a namespace init ran in once.
pub fn dry_run_remove_text(families: &[Family]) -> String {
    let mut text = String::new();
    for &family in families {
        text += &format!(
            "# remora-proxy init --remove: the {} rules, for `{} --noflush`\n",
            family.name(),
            family.restore_command()
        );
        text += &remove_text(JumpCounts::ONCE);
    }
    text
}

/// The chain an `-A CHAIN ...` line appends to.
pub fn chain_of(rule: &str) -> Option<&str> {
    rule.strip_prefix("-A ")?.split(' ').next()
}

/// The table, and our chains declared (created, or emptied when they exist).
fn header() -> String {
    let mut text = String::from("*nat\n");
    for chain in CHAINS {
        line(&mut text, &format!(":{chain} - [0:0]"));
    }
    text
}

fn line(text: &mut String, line: &str) {
    text.push_str(line);
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(flags: &[&str], family: Family) -> RuleSet {
        RuleSet::new(&Settings::from_flags(flags).unwrap(), family)
    }

    const DEFAULT_V4: &str = "\
*nat
:REMORA_INBOUND - [0:0]
:REMORA_IN_REDIRECT - [0:0]
:REMORA_OUTPUT - [0:0]
:REMORA_OUT_REDIRECT - [0:0]
-A REMORA_INBOUND -p tcp -m tcp --dport 7900 -j RETURN
-A REMORA_INBOUND -p tcp -m tcp --dport 7002 -j RETURN
-A REMORA_INBOUND -p tcp -m tcp --dport 7001 -j RETURN
-A REMORA_INBOUND -p tcp -j REMORA_IN_REDIRECT
-A REMORA_IN_REDIRECT -p tcp -j REDIRECT --to-ports 7002
-A REMORA_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A REMORA_OUTPUT -o lo -j RETURN
-A REMORA_OUTPUT -d 127.0.0.1/32 -j RETURN
-A REMORA_OUTPUT -p tcp -j REMORA_OUT_REDIRECT
-A REMORA_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 7001
-A PREROUTING -p tcp -j REMORA_INBOUND
-A OUTPUT -p tcp -j REMORA_OUTPUT
COMMIT
";

    #[test]
    fn the_default_rules_redirect_all_tcp_but_the_proxy_s_own() {
        let text = rules(&[], Family::V4).install_text(JumpCounts::NONE);
        assert_eq!(text, DEFAULT_V4);
    }

    #[test]
    fn ipv6_rules_use_ipv6_loopback_and_only_ipv6_cidrs() {
        let flags = [
            "--skip-outbound-cidrs",
            "10.0.0.0/8,fd00::/8,169.254.169.254",
        ];
        let v6 = rules(&flags, Family::V6);
        assert_eq!(
            v6.chain(OUTPUT),
            [
                "-A REMORA_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "-A REMORA_OUTPUT -o lo -j RETURN",
                "-A REMORA_OUTPUT -d ::1/128 -j RETURN",
                "-A REMORA_OUTPUT -d fd00::/8 -j RETURN",
                "-A REMORA_OUTPUT -p tcp -j REMORA_OUT_REDIRECT",
            ]
        );
        let v4 = rules(&flags, Family::V4);
        assert_eq!(
            v4.chain(OUTPUT)[3..5],
            [
                "-A REMORA_OUTPUT -d 10.0.0.0/8 -j RETURN",
                "-A REMORA_OUTPUT -d 169.254.169.254/32 -j RETURN",
            ]
        );
        // Inbound and the redirects are the same in both families.
        for chain in [INBOUND, IN_REDIRECT, OUT_REDIRECT] {
            assert_eq!(v4.chain(chain), v6.chain(chain), "{chain}");
        }
    }

    #[test]
    fn skipped_ports_and_the_gid_return_before_the_redirect() {
        let set = rules(
            &[
                "--proxy-gid",
                "1338",
                "--skip-inbound-ports",
                "22,7900",
                "--skip-outbound-ports",
                "5432,6379",
                "--skip-outbound-cidrs",
                "0.0.0.0/0",
            ],
            Family::V4,
        );
        assert_eq!(
            set.chain(INBOUND),
            [
                "-A REMORA_INBOUND -p tcp -m tcp --dport 22 -j RETURN",
                "-A REMORA_INBOUND -p tcp -m tcp --dport 7900 -j RETURN",
                "-A REMORA_INBOUND -p tcp -m tcp --dport 7002 -j RETURN",
                "-A REMORA_INBOUND -p tcp -m tcp --dport 7001 -j RETURN",
                "-A REMORA_INBOUND -p tcp -j REMORA_IN_REDIRECT",
            ]
        );
        assert_eq!(
            set.chain(OUTPUT),
            [
                "-A REMORA_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "-A REMORA_OUTPUT -m owner --gid-owner 1338 -j RETURN",
                "-A REMORA_OUTPUT -o lo -j RETURN",
                "-A REMORA_OUTPUT -d 127.0.0.1/32 -j RETURN",
                "-A REMORA_OUTPUT -j RETURN",
                "-A REMORA_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN",
                "-A REMORA_OUTPUT -p tcp -m tcp --dport 6379 -j RETURN",
                "-A REMORA_OUTPUT -p tcp -j REMORA_OUT_REDIRECT",
            ]
        );
    }

    #[test]
    fn included_inbound_ports_are_redirected_one_by_one() {
        let set = rules(
            &[
                "--include-inbound-ports",
                "8080,22,7002,9090",
                "--skip-inbound-ports",
                "22",
            ],
            Family::V4,
        );
        assert_eq!(
            set.chain(INBOUND)[4..],
            [
                "-A REMORA_INBOUND -p tcp -m tcp --dport 8080 -j REMORA_IN_REDIRECT",
                "-A REMORA_INBOUND -p tcp -m tcp --dport 9090 -j REMORA_IN_REDIRECT",
            ]
        );
        let none = rules(&["--include-inbound-ports", ""], Family::V4);
        assert!(none.chain(INBOUND).iter().all(|r| r.ends_with("-j RETURN")));
    }

    #[test]
    fn a_second_run_adds_no_jump_and_mends_repeated_ones() {
        let set = rules(&[], Family::V4);
        let again = set.install_text(JumpCounts::ONCE);
        assert_eq!(
            again,
            DEFAULT_V4.replace(
                "-A PREROUTING -p tcp -j REMORA_INBOUND\n-A OUTPUT -p tcp -j REMORA_OUTPUT\n",
                ""
            )
        );
        let repeated = set.install_text(JumpCounts([3, 1]));
        assert!(repeated.ends_with(
            "-D PREROUTING -p tcp -j REMORA_INBOUND\n\
             -D PREROUTING -p tcp -j REMORA_INBOUND\n\
             COMMIT\n"
        ));
    }

    #[test]
    fn removal_deletes_the_jumps_then_the_emptied_chains() {
        assert_eq!(
            remove_text(JumpCounts::ONCE),
            "\
*nat
:REMORA_INBOUND - [0:0]
:REMORA_IN_REDIRECT - [0:0]
:REMORA_OUTPUT - [0:0]
:REMORA_OUT_REDIRECT - [0:0]
-D PREROUTING -p tcp -j REMORA_INBOUND
-D OUTPUT -p tcp -j REMORA_OUTPUT
-X REMORA_INBOUND
-X REMORA_IN_REDIRECT
-X REMORA_OUTPUT
-X REMORA_OUT_REDIRECT
COMMIT
"
        );
        assert!(!remove_text(JumpCounts::NONE).contains("-D "));
    }

    #[test]
    fn the_dry_run_prints_each_family_under_a_comment() {
        let sets = [rules(&[], Family::V4), rules(&[], Family::V6)];
        let text = dry_run_text(&sets);
        let v6_header = "# remora-proxy init: the IPv6 rules, for `ip6tables-restore --noflush`\n";
        let (v4, v6) = text.split_once(v6_header).unwrap();
        assert_eq!(
            v4,
            format!(
                "# remora-proxy init: the IPv4 rules, for `iptables-restore --noflush`\n{DEFAULT_V4}"
            )
        );
        assert_eq!(v6, DEFAULT_V4.replace("127.0.0.1/32", "::1/128"));
    }

    #[test]
    fn the_jumps_name_our_chains() {
        assert_eq!(
            JUMPS[0].rule(),
            format!("-A PREROUTING -p tcp -j {INBOUND}")
        );
        assert_eq!(JUMPS[1].rule(), format!("-A OUTPUT -p tcp -j {OUTPUT}"));
        assert_eq!(chain_of(&JUMPS[1].rule()), Some("OUTPUT"));
    }
}
