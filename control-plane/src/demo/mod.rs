//! `remora demo`: a whole mesh on loopback with no set-up. It starts the control plane
//! on a temporary config directory, the apps of a small topology (web calling orders
//! v1 and v2), one `remora-proxy` process per app, drives steady traffic, moves the
//! split from v1 to v2 by rewriting the HTTPRoute file and reports each step.

mod app;
mod process;
mod topology;
mod traffic;

use std::path::PathBuf;
use std::time::Duration;

pub use process::ProcessError;

/// Options of `remora demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The share of traffic for v2 at each step, in percent.
    pub steps: Vec<u32>,
    /// How long traffic runs at each step once the split has been applied.
    pub step_duration: Duration,
    /// Requests per second the demo sends.
    pub rate: u32,
    /// Keep the mesh running after the last step, until Ctrl-C.
    pub forever: bool,
    /// Where the `remora` and `remora-proxy` binaries are; default: next to this one.
    pub bin_dir: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            steps: vec![0, 25, 50, 75, 100],
            step_duration: Duration::from_secs(2),
            rate: 100,
            forever: false,
            bin_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("cannot write the demo config in {path}")]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start a demo app: {0}")]
    App(std::io::Error),
    #[error("cannot mint a bootstrap token: {0}")]
    Token(crate::identity::TokenError),
    #[error("the mesh did not converge: {0}")]
    Converge(String),
    #[error("step {step}: {errors} of {total} requests failed")]
    Failures {
        step: usize,
        errors: u64,
        total: u64,
    },
}

/// Runs the demo, printing to stdout (this is CLI output). Every process it started
/// is stopped before it returns, whatever happened.
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let mut mesh = topology::Mesh::start(&options).await?;
    let outcome = steps(&mut mesh, &options).await;
    mesh.stop().await;
    outcome
}

async fn steps(mesh: &mut topology::Mesh, options: &DemoOptions) -> Result<(), DemoError> {
    println!("Remora demo: web -> orders, split between orders-v1 and orders-v2, all on loopback");
    println!(
        "  mTLS between the proxies: each holds a SPIFFE certificate from the control plane's CA"
    );
    println!("  config dir     {}", mesh.config_dir().display());
    println!();
    println!("  Open the dashboard: http://{}/", mesh.api);
    println!();
    println!(
        "  control plane  (pid {})  xDS {}  API http://{}",
        mesh.pids()[0],
        mesh.xds,
        mesh.api
    );
    println!("    proxies      http://{}/api/v1/proxies", mesh.api);
    println!("    stat         remora stat --api http://{}", mesh.api);
    for p in &mesh.proxies {
        println!(
            "  {:<13}  (pid {})  app {}  outbound {}  inbound {}",
            p.service,
            p.process.pid(),
            p.app,
            p.addresses.outbound,
            p.addresses.inbound,
        );
        println!("    config dump  http://{}/config_dump", p.addresses.admin);
    }
    println!();
    let driver = traffic::Driver::start(mesh.entry(), "orders", options.rate);
    let total_steps = options.steps.len();
    let mut failed = None;
    for (i, v2) in options.steps.iter().copied().enumerate() {
        let v1 = 100 - v2.min(100);
        let applied = mesh.set_split(v1, v2).await?;
        driver.reset();
        tokio::time::sleep(options.step_duration).await;
        let stats = driver.take();
        println!(
            "step {}/{}: split orders-v1 {v1}% / orders-v2 {v2}% (applied by the proxies in {:.1} s)",
            i + 1,
            total_steps,
            applied.as_secs_f64()
        );
        println!("  {stats}");
        if stats.errors > 0 && failed.is_none() {
            failed = Some(DemoError::Failures {
                step: i + 1,
                errors: stats.errors,
                total: stats.total,
            });
        }
    }
    if options.forever {
        println!("\nThe mesh keeps running (traffic continues); press Ctrl-C to stop.");
        // Until Ctrl-C or SIGTERM, which the caller waits for.
        std::future::pending::<()>().await;
    }
    driver.stop().await;
    match failed {
        Some(e) => Err(e),
        None => {
            println!("\nDone: the split moved from v1 to v2 with no failed request.");
            Ok(())
        }
    }
}
