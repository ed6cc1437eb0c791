//! `remora-proxy --bootstrap FILE`: run the proxy.
//! `REMORA_BOOTSTRAP_FROM_ENV=1 remora-proxy`: run it with the bootstrap from
//! environment variables (how injection runs it in a pod).
//! `remora-proxy init [FLAGS]`: install the transparent-mode iptables rules
//! (see `remora-proxy init --help`).
//! `remora-proxy wait` / `remora-proxy drain`: the classic sidecar's hooks.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remora_proxy::bootstrap::Bootstrap;
use remora_proxy::hooks::{DrainArgs, WaitArgs};
use remora_proxy::init::InitArgs;
use remora_proxy::run::{run, Options};

#[derive(Parser)]
#[command(
    name = "remora-proxy",
    version,
    about = "Remora's data-plane proxy",
    after_help = env_help()
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The bootstrap file (YAML): node id, service, namespace, control plane, listeners.
    #[arg(long, env = "REMORA_BOOTSTRAP")]
    bootstrap: Option<PathBuf>,
    /// Read the bootstrap from environment variables instead of a file (as
    /// injected into a Kubernetes pod; the variables are listed below).
    #[arg(long, env = "REMORA_BOOTSTRAP_FROM_ENV",
          value_parser = clap::builder::FalseyValueParser::new())]
    bootstrap_from_env: bool,
    /// Write the bound listener addresses here as JSON once listening.
    #[arg(long)]
    addresses_file: Option<PathBuf>,
    /// Worker threads. One (the default) runs everything on a single-threaded
    /// runtime: no work stealing and no cross-thread wake-ups, the cheapest per
    /// request for a sidecar; more spread connections over a multi-threaded one.
    #[arg(long, env = "REMORA_PROXY_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

#[derive(Subcommand)]
enum Command {
    // No doc comments here: they would replace the ones on the arguments'
    // structs, which `--help` shows in full.
    Init(InitArgs),
    Wait(WaitArgs),
    Drain(DrainArgs),
}

/// `--help`'s list of the environment bootstrap's variables, made from the
/// list the bootstrap keeps (whose test checks it against what is read), so
/// the help cannot drift from the code.
fn env_help() -> String {
    use remora_proxy::bootstrap::env::VARIABLES;
    let width = VARIABLES
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut help = String::from(
        "With REMORA_BOOTSTRAP_FROM_ENV=1 (and no --bootstrap) the bootstrap comes from\n\
         these environment variables (an injected sidecar's; see `remora inject`):\n",
    );
    for (name, what) in VARIABLES {
        help.push_str(&format!("  {name:<width$}  {what}\n"));
    }
    help.push_str("Logs: REMORA_LOG (else RUST_LOG), e.g. info,remora_proxy::xds=debug.");
    help
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Synchronous, no runtime, no bootstrap: iptables-restore and
    // iptables-save, or a few requests to the admin port.
    let (name, outcome) = match &args.command {
        Some(Command::Init(init)) => (
            "init",
            remora_proxy::init::run(init).map_err(|e| e.to_string()),
        ),
        Some(Command::Wait(wait)) => (
            "wait",
            remora_proxy::hooks::wait(wait).map_err(|e| e.to_string()),
        ),
        Some(Command::Drain(drain)) => (
            "drain",
            remora_proxy::hooks::drain(drain).map_err(|e| e.to_string()),
        ),
        None => ("", Ok(())),
    };
    if args.command.is_some() {
        if let Err(error) = outcome {
            eprintln!("remora-proxy {name}: {error}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let bootstrap = match (args.bootstrap, args.bootstrap_from_env) {
        (Some(_), true) => anyhow::bail!(
            "give --bootstrap FILE or REMORA_BOOTSTRAP_FROM_ENV=1, not both"
        ),
        (Some(path), false) => Some(path),
        (None, true) => None,
        (None, false) => anyhow::bail!(
            "give --bootstrap FILE, or set REMORA_BOOTSTRAP_FROM_ENV=1 to read the bootstrap from environment variables"
        ),
    };
    let log_filter = init_tracing();
    let bootstrap = match bootstrap {
        Some(path) => Bootstrap::load(&path)?,
        None => Bootstrap::from_env(|name| std::env::var(name).ok())?,
    };
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
    }
    .context("cannot start the runtime")?;
    runtime.block_on(async {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        let options = Options {
            bootstrap,
            addresses_file: args.addresses_file,
            log_filter: Some(log_filter),
        };
        // The first SIGTERM or Ctrl-C drains (see remora_proxy::drain); a
        // second one, from someone who will not wait, exits at once.
        tokio::select! {
            result = run(options, async { let _ = first_rx.await; }) => result,
            () = signals(first_tx) => {
                tracing::warn!("a second signal: exiting without finishing the drain");
                Ok(())
            }
        }
    })?;
    Ok(())
}

/// Logs to stderr, filtered by `REMORA_LOG`, else `RUST_LOG` (`info` by default). `Targets` reads the
/// usual `level,crate=level` syntax without pulling a regex engine into the binary:
/// every page of code counts against the proxy's memory. The filter can be changed
/// later through the returned setter (the admin port's `POST /logging`).
fn init_tracing() -> remora_proxy::admin::LogFilter {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let default = || Targets::new().with_default(tracing::Level::INFO);
    let found = ["REMORA_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().map(|spec| (name, spec)));
    let filter = match found {
        Some((name, spec)) => spec.parse::<Targets>().unwrap_or_else(|error| {
            eprintln!("remora-proxy: ignoring {name}={spec:?}: {error}");
            default()
        }),
        None => default(),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    std::sync::Arc::new(move |spec: &str| {
        // `Targets` takes a bare word as a target name; a bare word here is meant
        // as a level, so it must be one.
        for directive in spec.split(',').filter(|d| !d.contains('=')) {
            directive
                .trim()
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .map_err(|_| format!("`{spec}` is not a log filter: `{directive}` is not a level (trace, debug, info, warn, error, off)"))?;
        }
        let targets = spec
            .parse::<Targets>()
            .map_err(|e| format!("`{spec}` is not a log filter: {e}"))?;
        handle
            .reload(targets)
            .map_err(|e| format!("cannot change the log filter: {e}"))
    })
}

/// Sends on `first` at the first SIGTERM or Ctrl-C; returns at the second.
async fn signals(first: tokio::sync::oneshot::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            None
        }
    };
    let mut first = Some(first);
    loop {
        let terminated = async {
            if let Some(t) = term.as_mut() {
                if t.recv().await.is_some() {
                    return;
                }
            }
            // No SIGTERM to wait for (or no more): Ctrl-C only.
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = terminated => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        match first.take() {
            Some(tx) => {
                let _ = tx.send(());
            }
            None => return,
        }
    }
}
