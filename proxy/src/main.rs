//! `remora-proxy --bootstrap FILE`

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use remora_proxy::bootstrap::Bootstrap;
use remora_proxy::run::{run, Options};

#[derive(Parser)]
#[command(name = "remora-proxy", version, about = "Remora's data-plane proxy")]
struct Args {
    /// The bootstrap file (YAML): node id, service, namespace, control plane, listeners.
    #[arg(long, env = "REMORA_BOOTSTRAP")]
    bootstrap: PathBuf,
    /// Write the bound listener addresses here as JSON once listening.
    #[arg(long)]
    addresses_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let bootstrap = Bootstrap::load(&args.bootstrap)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        run(
            Options {
                bootstrap,
                addresses_file: args.addresses_file,
            },
            shutdown_signal(),
        )
        .await
    })?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
