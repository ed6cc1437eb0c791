//! `remora`: the control plane and operator CLI. Parses the command line and hands
//! off to the library.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use remora_control::cli::{
    ApplyArgs, CertificateCommand, CertificateCreateArgs, Cli, Command, DataArgs, DeleteArgs,
    GetArgs, Output, StatArgs, StatusArgs, TokenCommand, TokenCreateArgs,
};
use remora_control::client::{self, ClientError, Exit};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's output is its report, and the API commands' their answer;
    // their own logs only say what went wrong.
    let default_level = match cli.command {
        Command::Control(_) => "info",
        _ => "warn",
    };
    init_tracing(default_level);
    let result = match cli.command {
        Command::Control(args) => {
            let shutdown = remora_control::signal::terminate();
            remora_control::run_control(args.into(), shutdown)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Command::Check(args) => match (args.kubernetes, args.path.clone()) {
            (true, _) => check_kubernetes(args).await,
            (false, Some(path)) => check(&path),
            (false, None) => Ok(Exit::Usage.into()),
        },
        // Ctrl-C or SIGTERM drops the demo, and with it every process it
        // started (they are killed on drop), before this one exits.
        Command::Demo(args) => tokio::select! {
            result = remora_control::demo::run(args.into()) => result
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from),
            () = remora_control::signal::terminate() => Ok(ExitCode::SUCCESS),
        },
        Command::Token(TokenCommand::Create(args)) => token_create(args),
        Command::Certificate(CertificateCommand::Create(args)) => certificate_create(args),
        Command::TrustBundle(args) => trust_bundle(args),
        Command::Stat(args) => stat(args).await,
        Command::Apply(args) => apply(args).await,
        Command::Delete(args) => delete(args).await,
        Command::Get(args) => get(args).await,
        Command::Status(args) => status(args).await,
        Command::Inject(args) => inject(args),
        Command::Install(args) => install(args),
    };
    result.unwrap_or_else(|error| {
        eprintln!("remora: {}", remora_control::Chain(error.as_ref()));
        // Scripts tell "the control plane is down" (3) from "it said no" (1).
        match error.downcast_ref::<ClientError>() {
            Some(e) => e.exit().into(),
            None => ExitCode::FAILURE,
        }
    })
}

async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.client()?;
    let request = client::apply::Request {
        what: client::apply::What::Files(args.files),
        namespace: args.namespace,
        dry_run: args.dry_run,
        wait: args.wait.then_some(args.timeout),
        output: args.output,
    };
    Ok(client::apply::run(&api, false, request).await?.into())
}

async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let what = match args.what() {
        Ok(what) => what,
        Err(usage) => {
            eprintln!("remora delete: {usage}");
            return Ok(Exit::Usage.into());
        }
    };
    let api = args.api.client()?;
    let request = client::apply::Request {
        what,
        namespace: args.namespace,
        dry_run: args.dry_run,
        wait: None,
        output: args.output,
    };
    Ok(client::apply::run(&api, true, request).await?.into())
}

async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.client()?;
    let exit = client::get::run(
        &api,
        args.kind,
        args.name.as_deref(),
        args.namespace.as_deref(),
        args.output,
    )
    .await?;
    Ok(exit.into())
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.client()?;
    let exit = client::status::run(&api, args.output, args.namespace.as_deref()).await?;
    Ok(exit.into())
}

/// `remora inject`: all documents rewritten, or nothing printed and exit 1.
fn inject(args: remora_control::cli::InjectArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use remora_control::inject::{rewrite, Direction};
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    // The same settings as the webhook's.
    let mut settings = remora_control::cli::inject_settings(args.proxy_image);
    if let Some(file) = &args.trust_bundle {
        let pem = std::fs::read_to_string(file)
            .with_context(|| format!("--trust-bundle {}", file.display()))?;
        anyhow::ensure!(
            pem.contains("-----BEGIN CERTIFICATE-----"),
            "--trust-bundle {}: holds no PEM certificate (give what `remora trust-bundle` prints)",
            file.display()
        );
        settings.trust_bundle = Some(pem);
    }
    settings.control_plane = args.control_plane;
    settings.control_plane_namespace = args.control_plane_namespace;
    let direction = match args.uninject {
        true => Direction::Uninject,
        false => Direction::Inject,
    };
    let out = rewrite(&text, direction, &settings)
        .with_context(|| format!("inject {}", args.file.display()))?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `remora install`: the manifests of deploy/base, with the namespace and
/// images asked for.
fn install(args: remora_control::cli::InstallArgs) -> anyhow::Result<ExitCode> {
    use remora_control::install::{render, InstallOptions};
    let mut options = InstallOptions::new(env!("CARGO_PKG_VERSION"));
    options.namespace = args.namespace;
    if let Some(image) = args.image {
        options.image = image;
    }
    if let Some(image) = args.proxy_image {
        options.proxy_image = image;
    }
    print!("{}", render(&options)?);
    Ok(ExitCode::SUCCESS)
}

/// `remora check --kubernetes`: one line per item (stdout: it is the
/// command's output); 3 when the API server cannot be reached.
async fn check_kubernetes(args: remora_control::cli::CheckArgs) -> anyhow::Result<ExitCode> {
    use remora_control::check::kubernetes;
    let options = remora_control::kubernetes::KubernetesOptions {
        kubeconfig: args.kubeconfig,
        context: args.context,
        namespace: args.namespace,
    };
    match kubernetes::run(&options).await {
        Ok(report) => {
            print!("{report}");
            Ok(report.exit().into())
        }
        Err(error) => {
            eprintln!("remora: {}", remora_control::Chain(&error));
            Ok(error.exit().into())
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_tracing(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Prints every problem (stdout: it is the command's output); exit code 1 if any.
fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let report = remora_control::check::check(path)?;
    for problem in &report.problems {
        println!("{problem}");
    }
    let n = report.problems.len();
    if n == 0 {
        println!("{}: ok ({})", path.display(), report.summary());
        Ok(ExitCode::SUCCESS)
    } else {
        let s = if n == 1 { "" } else { "s" };
        println!(
            "{}: {n} problem{s} ({} valid)",
            path.display(),
            report.summary()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Prints the edges once, or (`--watch`) every two seconds until interrupted.
async fn stat(args: StatArgs) -> anyhow::Result<ExitCode> {
    use remora_control::api::query::encode;
    use remora_control::traffic::{screen, StatView};
    use std::io::Write as _;
    let api = args.api.client()?;
    let mut query = format!("window={}s", args.window.as_secs().max(1));
    for (k, v) in [("namespace", &args.namespace), ("service", &args.service)] {
        if let Some(v) = v {
            query.push_str(&format!("&{k}={}", encode(v)));
        }
    }
    let path = format!("/api/v1/stat?{query}");
    let interrupted = remora_control::signal::terminate();
    tokio::pin!(interrupted);
    let screen = screen::Screen::stdout(args.output == Output::Json, args.watch);
    loop {
        let view: StatView = api.get_json(&path).await?;
        let shown = match args.output {
            Output::Yaml => {
                let text = serde_yaml_ng::to_string(&view)?;
                writeln!(std::io::stdout().lock(), "{text}---")
                    .and_then(|()| std::io::stdout().lock().flush())
            }
            _ => screen.show(&mut std::io::stdout().lock(), &view),
        };
        match shown {
            // `remora stat --watch | head`: the reader is done, so are we.
            Err(e) if screen::reader_gone(&e) => return Ok(ExitCode::SUCCESS),
            shown => shown?,
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            () = &mut interrupted => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Prints a new token (stdout: it is the command's output).
fn token_create(args: TokenCreateArgs) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(&args.data);
    let store = remora_control::identity::TokenStore::new(&data_dir);
    let token = match (args.admin, args.namespace, args.service_account) {
        (true, _, _) => store.create_admin(args.ttl)?,
        (false, Some(namespace), Some(service_account)) => {
            // The identity must be valid before a token grants it.
            remora_control::ca::SpiffeId::new(
                &args.data.trust_domain,
                &namespace,
                &service_account,
            )?;
            let grant = remora_control::identity::Grant {
                namespace,
                service_account,
            };
            store.create(grant, args.ttl)?
        }
        _ => anyhow::bail!("give --namespace and --service-account, or --admin"),
    };
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Signs a workload certificate with the CA in the data directory (which must
/// exist) and writes it with a new key and the trust bundle; prints what it
/// wrote (stdout: it is the command's output).
fn certificate_create(args: CertificateCreateArgs) -> anyhow::Result<ExitCode> {
    use remora_control::ca::{workload, CertificateAuthority, SpiffeId};
    let identity = SpiffeId::new(
        &args.data.trust_domain,
        &args.namespace,
        &args.service_account,
    )?;
    let ca = CertificateAuthority::load_existing(
        &data_dir(&args.data),
        args.ca_files().as_ref(),
        &args.data.trust_domain,
    )?;
    let issued = ca.issue(&identity, &[], args.ttl)?;
    let files = workload::write(&args.out_dir, &issued, ca.trust_bundle_pem())?;
    println!("identity  {identity}");
    println!(
        "expires   in {} (renew before then: run this again; gRPC reads the files again)",
        remora_control::duration::format_duration(args.ttl)
    );
    println!("cert      {}", files.cert.display());
    println!("key       {}", files.key.display());
    println!("ca        {}", files.bundle.display());
    Ok(ExitCode::SUCCESS)
}

/// Prints the trust bundle of the CA in this data directory; refuses when it
/// has none (a wrong `--data-dir` must not make a new CA).
fn trust_bundle(args: DataArgs) -> anyhow::Result<ExitCode> {
    let pem = remora_control::ca::CertificateAuthority::existing_trust_bundle(&data_dir(&args))?;
    print!("{pem}");
    Ok(ExitCode::SUCCESS)
}

fn data_dir(args: &DataArgs) -> std::path::PathBuf {
    args.data_dir
        .clone()
        .unwrap_or_else(remora_control::control::default_data_dir)
}
