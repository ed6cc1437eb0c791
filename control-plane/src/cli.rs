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
    /// Bootstrap tokens that let a proxy obtain its workload certificate.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the trust bundle (PEM) proxies verify peers against.
    TrustBundle(DataArgs),
    /// Per-hop golden signals (SRC -> DST: success rate, requests per second,
    /// p50/p95/p99 latency, mesh overhead), from the control plane.
    Stat(StatArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct StatArgs {
    /// Only edges to or from this service.
    pub service: Option<String>,
    /// Only edges to or from this namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The control plane's API address.
    #[arg(long, env = "REMORA_API_ADDR", default_value_t = DEFAULT_API_ADDR)]
    pub api: SocketAddr,
    /// A file holding an admin token (remora token create --admin), for an API
    /// that needs one (off loopback, or --api-token-required).
    #[arg(long, value_name = "FILE", env = "REMORA_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The window the figures cover: e.g. 10s, 1m (at most 10m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub window: std::time::Duration,
    /// Refresh every two seconds until interrupted.
    #[arg(short, long)]
    pub watch: bool,
    /// `table` for people, `json` for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token granting one identity; prints it (only its hash is stored).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Where the CA and the token hashes live (default $REMORA_DATA_DIR or ~/.remora).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = crate::control::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  remora token create --namespace default --service-account orders > orders.token\n  remora token create --admin --ttl 7d > admin.token   # for the HTTP API (--token-file)"
)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The workload's namespace (with --service-account).
    #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
    pub namespace: Option<String>,
    /// The workload's service account: the token grants
    /// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
    #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
    pub service_account: Option<String>,
    /// An admin token instead: it reads the control plane's HTTP API (needed
    /// when the API listens on anything but loopback) and grants no identity.
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid: e.g. 90s, 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
}

pub use crate::duration::parse_duration;

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
    #[command(flatten)]
    pub data: DataArgs,
    /// An operator's CA certificate (PEM) to sign with, instead of the CA the
    /// control plane makes in its data directory. Needs --ca-key.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// The root(s) proxies should trust when --ca-cert is an intermediate.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_bundle: Option<PathBuf>,
    /// Lifetime of workload certificates: e.g. 24h, 20s.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub cert_ttl: std::time::Duration,
    /// Also serve proxies WITHOUT a client certificate (xDS and telemetry). For
    /// local experiments only: anyone who reaches the xDS port can then read the
    /// config of the namespace it names. Such proxies may serve only Services
    /// annotated remora.io/allow-unauthenticated-endpoints: "true".
    #[arg(long)]
    pub allow_plaintext_proxies: bool,
    /// Require an admin token (remora token create --admin) on the HTTP API
    /// even when it listens on loopback; elsewhere it is always required.
    #[arg(long)]
    pub api_token_required: bool,
    /// Open xDS connections at most; more are closed at once.
    #[arg(long, default_value_t = crate::control::DEFAULT_MAX_XDS_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_xds_connections: usize,
}

impl From<ControlArgs> for ControlOptions {
    fn from(a: ControlArgs) -> Self {
        ControlOptions {
            config_dir: a.config_dir,
            xds_addr: a.xds_addr,
            api_addr: a.api_addr,
            addresses_file: a.addresses_file,
            reconnect_grace: std::time::Duration::from_secs(a.reconnect_grace),
            data_dir: a
                .data
                .data_dir
                .unwrap_or_else(crate::control::default_data_dir),
            trust_domain: a.data.trust_domain,
            ca_files: match (a.ca_cert, a.ca_key) {
                (Some(cert), Some(key)) => Some(crate::ca::CaFiles {
                    cert,
                    key,
                    bundle: a.ca_bundle,
                }),
                _ => None,
            },
            leaf_ttl: a.cert_ttl,
            allow_plaintext_proxies: a.allow_plaintext_proxies,
            api_token_required: a.api_token_required,
            max_xds_connections: a.max_xds_connections,
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
