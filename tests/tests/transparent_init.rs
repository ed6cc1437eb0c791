//! `remora-proxy init`, run as a pod's init container runs it, in a network
//! namespace of its own: `--dry-run` prints the rules and changes nothing, two runs
//! leave exactly the rules of one, and `--remove` takes every chain and jump out.
//!
//! The namespace tests need root (to create a namespace), `ip` (iproute2) and
//! iptables; `scripts/test` installs both. Without them they print a loud SKIPPED
//! block and pass; set `REMORA_TESTS_REQUIRE_NETNS=1` to make that a failure. The
//! flag tests at the end need nothing and always run.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use remora_tests::harness::bin_path;

/// Makes a skipped namespace test a failure (for a CI that runs as root).
const REQUIRE_ENV: &str = "REMORA_TESTS_REQUIRE_NETNS";

/// The commands the namespace tests run.
const TOOLS: [&str; 5] = [
    "ip",
    "iptables-restore",
    "iptables-save",
    "ip6tables-restore",
    "ip6tables-save",
];

/// A network namespace of our own (`remora-t-<pid>-<n>`), deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace, or `None` (after saying why, loudly) when this machine
    /// cannot make one.
    fn create() -> Option<Self> {
        match Self::try_create() {
            Ok(netns) => Some(netns),
            Err(why) => {
                if std::env::var_os(REQUIRE_ENV).is_some() {
                    panic!("{REQUIRE_ENV} is set but {why}");
                }
                // Straight to stderr: the test harness captures `eprintln!` of a
                // passing test, and this must be seen.
                let bar = "!".repeat(78);
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{bar}\n!! SKIPPED: {why}.\n!! The transparent-mode rules were NOT tested. \
                     CI installs iptables and iproute2;\n!! run as root (or set {REQUIRE_ENV}=1 \
                     to make this a failure).\n{bar}\n"
                );
                None
            }
        }
    }

    fn try_create() -> Result<Self, String> {
        if let Some(missing) = TOOLS.iter().find(|tool| !on_path(tool)) {
            return Err(format!("`{missing}` is not installed"));
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "remora-t-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run `ip netns add`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add {name}` failed (not root?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { name })
    }

    /// Runs `program args` inside the namespace.
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap()
    }

    /// `remora-proxy init args` inside the namespace; its stdout, or a panic with
    /// its stderr.
    fn init(&self, args: &[&str]) -> String {
        let bin = bin_path("remora-proxy").unwrap();
        let mut argv = vec!["init"];
        argv.extend_from_slice(args);
        succeeded(
            &format!("remora-proxy {argv:?}"),
            self.exec(path(&bin), &argv),
        )
    }

    /// The `nat` table of both families, without comments and counters.
    fn nat(&self) -> String {
        let mut tables = String::new();
        for save in ["iptables-save", "ip6tables-save"] {
            let text = succeeded(save, self.exec(save, &["-t", "nat"]));
            tables += &format!("# {save}\n{}", without_counters(&text));
        }
        tables
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn path(bin: &Path) -> &str {
    bin.to_str().expect("the binary's path is UTF-8")
}

fn succeeded(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `iptables-save` text without its comments and packet counters, which differ
/// from run to run.
fn without_counters(text: &str) -> String {
    let mut kept = String::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let line = match line.rsplit_once(" [") {
            Some((declaration, _)) if line.starts_with(':') => declaration,
            _ => line,
        };
        kept += line;
        kept.push('\n');
    }
    kept
}

/// `remora-proxy init args` outside any namespace (flag checks, `--dry-run`).
fn init_here(args: &[&str]) -> Output {
    Command::new(bin_path("remora-proxy").unwrap())
        .arg("init")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_dry_run_prints_both_families_and_changes_nothing() {
    let Some(netns) = Netns::create() else { return };
    let before = netns.nat();
    let printed = netns.init(&["--dry-run", "--skip-outbound-cidrs", "10.0.0.0/8,fd00::/8"]);
    assert!(
        printed.starts_with(
            "# remora-proxy init: the IPv4 rules, for `iptables-restore --noflush`\n*nat\n"
        ),
        "{printed}"
    );
    let (v4, v6) = printed
        .split_once("# remora-proxy init: the IPv6 rules, for `ip6tables-restore --noflush`\n")
        .unwrap_or_else(|| panic!("no IPv6 section:\n{printed}"));
    assert!(
        v4.contains("-A REMORA_OUTPUT -d 10.0.0.0/8 -j RETURN\n"),
        "{v4}"
    );
    assert!(!v4.contains("fd00::/8"), "{v4}");
    assert!(
        v6.contains("-A REMORA_OUTPUT -d fd00::/8 -j RETURN\n"),
        "{v6}"
    );
    assert!(
        v6.contains("-A REMORA_OUTPUT -d ::1/128 -j RETURN\n"),
        "{v6}"
    );
    assert!(v6.ends_with("COMMIT\n"), "{v6}");
    assert_eq!(netns.nat(), before, "--dry-run changed the tables");
}

#[test]
fn init_twice_leaves_exactly_the_rules_of_init_once() {
    let Some(netns) = Netns::create() else { return };
    let flags = [
        "--skip-inbound-ports",
        "22",
        "--skip-outbound-ports",
        "5432",
        "--skip-outbound-cidrs",
        "169.254.169.254/32,fd00::/8",
        "--proxy-gid",
        "1337",
    ];
    let said = netns.init(&flags);
    assert!(said.contains("TCP now goes through the proxy"), "{said}");
    let once = netns.nat();
    netns.init(&flags);
    let twice = netns.nat();
    assert_eq!(twice, once, "a second init changed the rules");

    // What a pod's traffic goes through, in both families.
    let (v4, v6) = once.split_once("# ip6tables-save\n").unwrap();
    for table in [v4, v6] {
        for rule in [
            "-A PREROUTING -p tcp -j REMORA_INBOUND",
            "-A OUTPUT -p tcp -j REMORA_OUTPUT",
            "-A REMORA_INBOUND -p tcp -m tcp --dport 22 -j RETURN",
            "-A REMORA_INBOUND -p tcp -j REMORA_IN_REDIRECT",
            "-A REMORA_IN_REDIRECT -p tcp -j REDIRECT --to-ports 7002",
            "-A REMORA_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-A REMORA_OUTPUT -m owner --gid-owner 1337 -j RETURN",
            "-A REMORA_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN",
            "-A REMORA_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 7001",
        ] {
            let times = table.lines().filter(|line| *line == rule).count();
            assert_eq!(times, 1, "`{rule}` is there {times} times:\n{table}");
        }
    }
    assert!(
        v4.contains("-A REMORA_OUTPUT -d 169.254.169.254/32 -j RETURN\n"),
        "{v4}"
    );
    assert!(
        v6.contains("-A REMORA_OUTPUT -d fd00::/8 -j RETURN\n"),
        "{v6}"
    );

    // Changed settings replace the rules rather than adding to them.
    netns.init(&["--outbound-port", "7101", "--inbound-port", "7102"]);
    let changed = netns.nat();
    assert!(!changed.contains("5432"), "{changed}");
    assert!(changed.contains("-A REMORA_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 7101\n"));
    assert_eq!(
        changed
            .matches("-A OUTPUT -p tcp -j REMORA_OUTPUT\n")
            .count(),
        2
    );
}

#[test]
fn remove_takes_out_every_chain_and_jump() {
    let Some(netns) = Netns::create() else { return };
    let empty = netns.nat();
    netns.init(&[]);
    assert!(netns.nat().contains("REMORA_"));
    let said = netns.init(&["--remove"]);
    assert!(
        said.contains("removed the IPv4 and IPv6 redirect rules"),
        "{said}"
    );
    assert_eq!(netns.nat(), empty, "--remove left something behind");
    // Nothing to remove is fine too.
    netns.init(&["--remove"]);
    assert_eq!(netns.nat(), empty);
}

#[test]
fn a_bad_flag_is_named_and_nothing_runs() {
    let out = init_here(&["--skip-outbound-cidrs", "10.0.0.0/33", "--dry-run"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remora-proxy init: --skip-outbound-cidrs: `10.0.0.0/33` is not a CIDR"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = init_here(&["--inbound-port", "70000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--inbound-port: `70000` is not a port"),
        "{stderr}"
    );
}

#[test]
fn a_dry_run_needs_no_privilege_and_no_bootstrap() {
    let out = Command::new(bin_path("remora-proxy").unwrap())
        .args(["init", "--dry-run", "--ipv6", "false"])
        .env_remove("REMORA_BOOTSTRAP")
        .output()
        .unwrap();
    let printed = succeeded("remora-proxy init --dry-run", out);
    assert!(
        printed.contains("-A OUTPUT -p tcp -j REMORA_OUTPUT\n"),
        "{printed}"
    );
    assert!(!printed.contains("IPv6"), "{printed}");
}

#[test]
fn the_proxy_still_asks_for_its_bootstrap_file() {
    let out = Command::new(bin_path("remora-proxy").unwrap())
        .env_remove("REMORA_BOOTSTRAP")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--bootstrap"), "{stderr}");
}
