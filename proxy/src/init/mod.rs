//! `remora-proxy init`: install the iptables rules that send a network
//! namespace's TCP traffic through the proxy (transparent mode), or take them out.
//!
//! It runs once, before the proxy starts (in Kubernetes, an init container with
//! NET_ADMIN and NET_RAW and nothing else), and is synchronous: no runtime, no
//! bootstrap file, no control plane.
//!
//! - [`args`]: the flags, each with a `REMORA_INIT_*` environment variable.
//! - [`settings`]: the flags checked (ports, port lists, CIDRs); errors name the flag.
//! - [`rules`]: settings -> the `iptables-restore` text, per address family (pure).
//! - [`saved`]: what `iptables-save` says the `nat` table holds (pure).
//! - [`apply`]: runs `iptables-restore` and `iptables-save` and checks the result.
//!
//! Not here: reading where a redirected connection was going, which the proxy
//! does when it accepts it ([`crate::transparent`]).

pub mod apply;
pub mod args;
pub mod rules;
pub mod saved;
pub mod settings;

use std::io::{self, Write};

use apply::ApplyError;
pub use args::InitArgs;
use rules::{Family, RuleSet};
use settings::{Settings, SettingsError};

/// Why `remora-proxy init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] io::Error),
}

/// Installs the rules (or, with `--remove`, deletes them) in the current network
/// namespace; with `--dry-run`, prints the `iptables-restore` text instead.
pub fn run(args: &InitArgs) -> Result<(), InitError> {
    let families: &[Family] = if args.ipv6 {
        &[Family::V4, Family::V6]
    } else {
        &[Family::V4]
    };
    let names = families
        .iter()
        .map(|family| family.name())
        .collect::<Vec<_>>()
        .join(" and ");

    if args.remove {
        if args.dry_run {
            say(&rules::dry_run_remove_text(families))?;
        } else {
            apply::remove(families)?;
            say(&format!(
                "remora-proxy init: removed the {names} redirect rules\n"
            ))?;
        }
        return Ok(());
    }

    let settings = Settings::from_args(args)?;
    let sets: Vec<RuleSet> = families
        .iter()
        .map(|&family| RuleSet::new(&settings, family))
        .collect();
    if args.dry_run {
        say(&rules::dry_run_text(&sets))?;
        return Ok(());
    }
    apply::install(&sets)?;
    say(&format!(
        "remora-proxy init: {names} TCP now goes through the proxy: outbound to port {}, \
         inbound to port {} (uid {} and loopback excepted)\n",
        settings.outbound_port, settings.inbound_port, settings.proxy_uid
    ))
}

/// Writes to stdout; a closed stdout (`| head`) is an error, not a panic.
fn say(text: &str) -> Result<(), InitError> {
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(InitError::Stdout)
}
