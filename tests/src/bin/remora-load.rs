//! `remora-load`: the load generator and the standalone test app used by
//! `bench/run`.
//!
//! - `remora-load http --target ADDR --host H (--rate R | --max) ...` runs a load
//!   and prints latency percentiles, req/s and errors (JSON with `--json`).
//! - `remora-load app --listen ADDR --name N [--port-file F]` serves the HTTP test
//!   app until killed.
//! - `remora-load otlp-sink --listen ADDR [--port-file F]` takes OTLP/gRPC spans
//!   and throws them away (counting them) until killed: the collector of the
//!   benchmark's tracing setup.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{ArgGroup, Parser, Subcommand};
use remora_tests::app::TestApp;
use remora_tests::load::{Load, LoadMode, LoadSpec, Report};

#[derive(Debug, Parser)]
#[command(
    name = "remora-load",
    about = "Remora's load generator and benchmark test app"
)]
struct Cli {
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send HTTP/1.1 GETs over keep-alive connections and report latency and rate.
    #[command(group(ArgGroup::new("pace").required(true).args(["rate", "max"])))]
    Http(HttpArgs),
    /// Serve the HTTP test app (200, body "<name>\n", header x-backend) until killed.
    App(AppArgs),
    /// Accept OTLP/gRPC trace exports and discard them until killed.
    OtlpSink(SinkArgs),
    /// Open plain TCP connections, send nothing, and hold them (a client that
    /// hoards connections); prints `opened N` once they are up.
    Idle(IdleArgs),
}

#[derive(Debug, clap::Args)]
struct IdleArgs {
    /// Where to connect.
    #[arg(long)]
    target: SocketAddr,
    /// How many connections.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    connections: u32,
    /// Seconds to hold them before exiting.
    #[arg(long, default_value_t = 60)]
    hold: u64,
}

#[derive(Debug, clap::Args)]
struct SinkArgs {
    /// Address to listen on (port 0 = any).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the bound address (ip:port) to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct HttpArgs {
    /// Where to connect (an app, or a proxy's outbound listener).
    #[arg(long)]
    target: SocketAddr,
    /// The Host header (the service name when going through a proxy).
    #[arg(long)]
    host: String,
    /// The request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Open loop: this many requests per second in total.
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: every connection sends back to back.
    #[arg(long)]
    max: bool,
    /// Keep-alive connections (one request in flight each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts (not in the report).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Seconds before a request counts as a transport error.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct AppArgs {
    /// Address to listen on (port 0 = any).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The name the app answers with.
    #[arg(long)]
    name: String,
    /// Write the bound address (ip:port) to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    match cli.command {
        Command::Http(args) => runtime.block_on(http(args)),
        Command::App(args) => runtime.block_on(app(args)),
        Command::OtlpSink(args) => runtime.block_on(otlp_sink(args)),
        Command::Idle(args) => runtime.block_on(idle(args)),
    }
}

async fn http(args: HttpArgs) -> Result<()> {
    let duration = seconds("duration", args.duration)?;
    let warmup = seconds("warmup", args.warmup)?;
    let timeout = seconds("timeout", args.timeout)?;
    let mode = match args.rate {
        Some(rate) => LoadMode::Rate(rate),
        None => LoadMode::Max,
    };
    let spec = LoadSpec {
        target: args.target,
        host: args.host.clone(),
        path: args.path.clone(),
        mode,
        connections: args.connections,
        duration: Some(warmup + duration),
        timeout,
    };
    let full = Load::try_start(spec)?.wait().await;
    let measured = full.window(warmup..);
    if args.json {
        println!("{}", json(&args, mode, warmup, &full, &measured));
    } else {
        print_text(&args, mode, warmup, &measured);
    }
    Ok(())
}

fn seconds(name: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow!("--{name} must be a non-negative number of seconds, not {value}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn describe(mode: LoadMode) -> String {
    match mode {
        LoadMode::Rate(rate) => format!("rate {rate} req/s"),
        LoadMode::Max => "max".to_owned(),
    }
}

fn print_text(args: &HttpArgs, mode: LoadMode, warmup: Duration, r: &Report) {
    println!(
        "{} host {} path {}: {}, {} connections, {:.1}s measured after {:.1}s warm-up",
        args.target,
        args.host,
        args.path,
        describe(mode),
        args.connections,
        r.duration.as_secs_f64(),
        warmup.as_secs_f64()
    );
    println!(
        "requests {}  errors {}  req/s {:.1}",
        r.total, r.errors, r.rps
    );
    println!(
        "latency ms  p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(r.p50),
        ms(r.p99),
        ms(r.p999),
        ms(r.max)
    );
}

fn json(
    args: &HttpArgs,
    mode: LoadMode,
    warmup: Duration,
    full: &Report,
    r: &Report,
) -> serde_json::Value {
    serde_json::json!({
        "target": args.target.to_string(),
        "host": args.host,
        "path": args.path,
        "mode": match mode { LoadMode::Rate(_) => "rate", LoadMode::Max => "max" },
        "rate": match mode { LoadMode::Rate(rate) => Some(rate), LoadMode::Max => None },
        "connections": args.connections,
        "warmup_s": warmup.as_secs_f64(),
        "duration_s": r.duration.as_secs_f64(),
        "requests": r.total,
        "requests_all": full.total,
        "errors": r.errors,
        "errors_all": full.errors,
        "rps": r.rps,
        "p50_ms": ms(r.p50),
        "p99_ms": ms(r.p99),
        "p999_ms": ms(r.p999),
        "max_ms": ms(r.max),
    })
}

async fn idle(args: IdleArgs) -> Result<()> {
    let mut held = Vec::with_capacity(args.connections as usize);
    let mut failed = 0u32;
    // In batches, so the listen backlog is not the limit being measured.
    let mut remaining = args.connections;
    while remaining > 0 {
        let batch = remaining.min(500);
        remaining -= batch;
        let connects = (0..batch).map(|_| tokio::net::TcpStream::connect(args.target));
        for result in futures::future::join_all(connects).await {
            match result {
                Ok(stream) => held.push(stream),
                Err(_) => failed += 1,
            }
        }
    }
    println!("opened {} failed {failed}", held.len());
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.hold)) => {}
        _ = wait_for_signal() => {}
    }
    drop(held);
    Ok(())
}

async fn app(args: AppArgs) -> Result<()> {
    let app = TestApp::try_http(&args.name, args.listen)?;
    if let Some(file) = &args.port_file {
        write_atomically(file, &format!("{}\n", app.addr))?;
    }
    tracing::info!(addr = %app.addr, name = %args.name, "test app listening");
    wait_for_signal().await?;
    drop(app);
    Ok(())
}

async fn otlp_sink(args: SinkArgs) -> Result<()> {
    let sink = remora_tests::harness::OtlpReceiver::keeping(args.listen, 0).await?;
    if let Some(file) = &args.port_file {
        write_atomically(file, &format!("{}\n", sink.addr))?;
    }
    wait_for_signal().await?;
    eprintln!("otlp-sink: {} spans received", sink.received());
    Ok(())
}

/// Write via a temporary file and a rename, so a reader never sees half of it.
fn write_atomically(file: &PathBuf, text: &str) -> Result<()> {
    let mut tmp = file.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot rename to {}", file.display()))
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = term.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("cannot watch Ctrl-C")?,
    }
    Ok(())
}
