//! `remora-proxy --bootstrap FILE`: run the proxy.
//! `remora-proxy init [FLAGS]`: install the transparent-mode iptables rules
//! (see `remora-proxy init --help`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remora_proxy::bootstrap::Bootstrap;
use remora_proxy::init::InitArgs;
use remora_proxy::run::{run, Options};

#[derive(Parser)]
#[command(
    name = "remora-proxy",
    version,
    about = "Remora's data-plane proxy",
    // `init` needs no bootstrap file: a subcommand lifts `--bootstrap`'s requirement.
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The bootstrap file (YAML): node id, service, namespace, control plane, listeners.
    #[arg(long, env = "REMORA_BOOTSTRAP", required = true)]
    bootstrap: Option<PathBuf>,
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
    // No doc comment here: it would replace the one on `InitArgs`, which `--help`
    // shows in full.
    Init(InitArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Synchronous: iptables-restore and iptables-save, no runtime, no bootstrap.
    if let Some(Command::Init(init)) = &args.command {
        if let Err(error) = remora_proxy::init::run(init) {
            eprintln!("remora-proxy init: {error}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let bootstrap_path = args
        .bootstrap
        .context("--bootstrap is required to run the proxy")?;
    let log_filter = init_tracing();
    let bootstrap = Bootstrap::load(&bootstrap_path)?;
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

/// Logs to stderr, filtered by `RUST_LOG` (`info` by default). `Targets` reads the
/// usual `level,crate=level` syntax without pulling a regex engine into the binary:
/// every page of code counts against the proxy's memory. The filter can be changed
/// later through the returned setter (the admin port's `POST /logging`).
fn init_tracing() -> remora_proxy::admin::LogFilter {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let default = || Targets::new().with_default(tracing::Level::INFO);
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => spec.parse::<Targets>().unwrap_or_else(|error| {
            eprintln!("remora-proxy: ignoring RUST_LOG={spec:?}: {error}");
            default()
        }),
        Err(_) => default(),
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
