//! The `remora` command line. Each subcommand's arguments are a struct here; the
//! binary (`main.rs`) only dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::control::{ControlOptions, DEFAULT_API_ADDR, DEFAULT_XDS_ADDR};

#[derive(Debug, Parser)]
#[command(
    name = "remora",
    version,
    about = "Remora service mesh: control plane and operator CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane, reading resources from a directory of YAML files.
    Control(ControlArgs),
    /// Validate resources offline: print every problem, exit 1 if there is any.
    Check(CheckArgs),
    /// Run a whole mesh on loopback: web -> orders v1/v2, moving the split step by step.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the mesh (and its traffic) running after the last step, until Ctrl-C.
    #[arg(long)]
    pub forever: bool,
    /// The share of traffic for orders-v2 at each step, in percent.
    #[arg(long, value_delimiter = ',', default_value = "0,25,50,75,100",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub steps: Vec<u32>,
    /// Seconds of traffic at each step, once the proxies have applied the split.
    #[arg(long, default_value_t = 2.0)]
    pub step_seconds: f64,
    /// Requests per second.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Where the `remora` and `remora-proxy` binaries are (default: next to this one).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

impl From<DemoArgs> for crate::demo::DemoOptions {
    fn from(a: DemoArgs) -> Self {
        crate::demo::DemoOptions {
            steps: a.steps,
            step_duration: std::time::Duration::from_secs_f64(a.step_seconds.clamp(0.1, 3600.0)),
            rate: a.rate,
            forever: a.forever,
            bin_dir: a.bin_dir,
        }
    }
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Directory of Service / HTTPRoute YAML files (watched for changes).
    #[arg(long, value_name = "DIR", env = "REMORA_CONFIG_DIR")]
    pub config_dir: PathBuf,
    /// Listen address for xDS (gRPC ADS).
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_XDS_ADDR, env = "REMORA_XDS_ADDR")]
    pub xds_addr: SocketAddr,
    /// Listen address for the HTTP API.
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_API_ADDR, env = "REMORA_API_ADDR")]
    pub api_addr: SocketAddr,
    /// Once listening, write the bound addresses here as JSON ({"xds": ..., "api": ...}).
    #[arg(long, value_name = "FILE")]
    pub addresses_file: Option<PathBuf>,
    /// Seconds after start during which reconnecting proxies keep the endpoints
    /// they have, while the other proxies re-register (0 turns it off).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::xds::DEFAULT_RECONNECT_GRACE.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub reconnect_grace: u64,
}

impl From<ControlArgs> for ControlOptions {
    fn from(a: ControlArgs) -> Self {
        ControlOptions {
            config_dir: a.config_dir,
            xds_addr: a.xds_addr,
            api_addr: a.api_addr,
            addresses_file: a.addresses_file,
            reconnect_grace: std::time::Duration::from_secs(a.reconnect_grace),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A YAML file, or a directory of them.
    #[arg(short = 'f', long = "file", value_name = "FILE_OR_DIR")]
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn control_defaults_to_loopback_ports() {
        let cli = Cli::try_parse_from(["remora", "control", "--config-dir", "cfg"]).unwrap();
        let Command::Control(args) = cli.command else {
            panic!("not control");
        };
        let options = ControlOptions::from(args);
        assert_eq!(options, ControlOptions::new("cfg"));
    }
}
