//! `hookyard`: the command line of hookyard.
//!
//! - `hookyard validate FILE` checks an integration file: every problem is printed with its key
//!   and line, secrets references are resolved against the environment, and the exit code is 1
//!   when anything is wrong.
//! - `hookyard dev FILE` runs every service (token, egress, router, worker for all handlers,
//!   ingress) in one process against a NATS URL, for trying hookyard without containers.
//!
//! - `hookyard connection test NAME [METHOD PATH]` sends one request through connection `NAME`
//!   of a running egress (`--egress`) and prints the status, headers and a body excerpt
//!   (`connection`).
//!
//! - `hookyard events ls|show`, `hookyard tail`, `hookyard dlq ls|show|replay|purge`,
//!   `hookyard replay`, `hookyard handlers [pause|resume NAME]`, `hookyard audit`: the admin API
//!   of a running router (`admin`), as tables or `--json`.
//! - `hookyard poll NAME --dry-run` runs one poll of a polling source through a running egress
//!   and prints its records, ids, event types and the cursor it would store (`poll`).
//!
//! The commands live in this library so a test can build the same program under another name;
//! `main.rs` only calls [`main`].

mod admin;
mod connection;
mod poll;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookyard_core::{Integration, settings, streams::Topology, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "hookyard",
    version,
    about = "Self-hosted runtime for HTTP integrations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an integration file and print every problem with its key.
    Validate {
        /// The integration file.
        file: PathBuf,
        /// Do not look for the programs of `subprocess` steps: for checking a file on a machine
        /// other than where its workers run (the programs are checked when a worker starts).
        #[arg(long)]
        skip_programs: bool,
    },
    /// Run every service in one process (for development and trying hookyard out).
    Dev(Box<Dev>),
    /// Work with connections (partner APIs).
    #[command(subcommand)]
    Connection(connection::Command),
    /// Run one poll of a polling source and print what it reads, storing nothing.
    Poll(poll::Poll),
    #[command(flatten)]
    Admin(admin::Command),
}

#[derive(clap::Args)]
struct Dev {
    /// The integration file.
    file: PathBuf,
    /// NATS server URL.
    #[arg(
        long,
        env = "HOOKYARD_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// Prefix for stream and subject names (default none).
    #[arg(long, env = "HOOKYARD_NAMESPACE", default_value = "")]
    namespace: String,
    /// Where ingress listens for webhooks.
    #[arg(
        long,
        env = "HOOKYARD_INGRESS_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    ingress_listen: SocketAddr,
    /// gRPC address of the router (health).
    #[arg(long, default_value = "127.0.0.1:50051")]
    router_listen: SocketAddr,
    /// gRPC address of egress.
    #[arg(long, default_value = "127.0.0.1:50052")]
    egress_listen: SocketAddr,
    /// gRPC address of the token service.
    #[arg(long, default_value = "127.0.0.1:50053")]
    token_listen: SocketAddr,
    /// gRPC address of the worker (health).
    #[arg(long, default_value = "127.0.0.1:50054")]
    worker_listen: SocketAddr,
    /// Log format.
    #[arg(
        long,
        env = "HOOKYARD_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    log_format: telemetry::LogFormat,
    /// Token encryption keys (`<version>:<base64 of 32 bytes>`, comma-separated). With them,
    /// OAuth 2.0 tokens are kept encrypted in NATS KV and the consent page for
    /// `oauth2_authorization_code` connections is served; without them tokens stay in memory.
    #[arg(long, env = "HOOKYARD_TOKEN_KEYS", hide_env_values = true)]
    token_keys: Option<String>,
    /// Where the consent page listens (with `--token-keys`).
    #[arg(long, default_value = "127.0.0.1:50055")]
    consent_listen: SocketAddr,
}

/// Runs the command line given to the process.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate {
            file,
            skip_programs,
        } => validate(&file, !skip_programs),
        Command::Connection(command) => connection::run(command),
        Command::Poll(args) => poll::run(args),
        Command::Admin(command) => admin::run(command),
        Command::Dev(dev) => {
            let integration = match Integration::load(&dev.file) {
                Ok(i) => Arc::new(i),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(settings::EXIT_CONFIG);
                }
            };
            let _traces = telemetry::init("hookyard-dev", dev.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: failed to start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run_dev(*dev, integration)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn validate(file: &std::path::Path, programs: bool) -> ExitCode {
    let loaded = Integration::load(file).and_then(|i| {
        // Only the worker runs programs; validate checks them as a worker would at start.
        let programs = if programs {
            hookyard_worker::program::check(&i, &hookyard_core::service::config_dir(file))
        } else {
            Vec::new()
        };
        if programs.is_empty() {
            Ok(i)
        } else {
            Err(hookyard_core::config::LoadError::Invalid(programs))
        }
    });
    match loaded {
        Ok(i) => {
            for w in hookyard_core::config::advice::warnings(&i) {
                eprintln!("{}: warning: {w}", file.display());
            }
            println!(
                "{}: ok ({} sources, {} routes, {} handlers, {} connections)",
                file.display(),
                i.sources.len(),
                i.routes.len(),
                i.handlers.len(),
                i.connections.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) if !e.problems().is_empty() => {
            for p in e.problems() {
                eprintln!("{}: {p}", file.display());
            }
            eprintln!("{} problem(s) found", e.problems().len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "error: {e}: {}",
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))
}

async fn run_dev(dev: Dev, integration: Arc<Integration>) -> anyhow::Result<()> {
    let shutdown = hookyard_core::shutdown::on_signal();
    let topology = Topology::new(&dev.namespace);
    let nats = settings::connect_nats(&dev.nats_url, "hookyard-dev")
        .await
        .context("failed to connect to nats")?;
    let mut services = DevServices {
        tasks: tokio::task::JoinSet::new(),
        shutdown: shutdown.clone(),
    };

    let l = bind(dev.token_listen).await?;
    let store = dev_token_keys(&dev)
        .await?
        .map(|(keys, consent)| hookyard_token::StoreSettings {
            nats: nats.clone(),
            topology: topology.clone(),
            keys: Arc::new(keys),
            policy: hookyard_token::Policy::default(),
            consent: Some(consent),
        });
    let token = hookyard_token::Settings {
        integration: integration.clone(),
        store,
        reload: Some(hookyard_core::reload::Reload {
            path: dev.file.clone(),
            interval: hookyard_core::reload::Reload::DEFAULT_INTERVAL,
        }),
    };
    services.spawn("token", |sd| hookyard_token::run(token, l, sd));

    let egress = dev_egress(&dev, integration.clone());
    let l = bind(dev.egress_listen).await?;
    services.spawn("egress", |sd| hookyard_egress::run(egress, l, sd));

    let router = hookyard_router::Settings {
        integration: integration.clone(),
        nats: nats.clone(),
        topology: topology.clone(),
        reload: Some(hookyard_router::Reload {
            path: dev.file.clone(),
            interval: hookyard_router::Reload::DEFAULT_INTERVAL,
        }),
        admin: None,
        max_deliver: hookyard_router::ROUTER_MAX_DELIVER,
    };
    let l = bind(dev.router_listen).await?;
    services.spawn("router", |sd| hookyard_router::run(router, l, sd));

    let worker = hookyard_worker::Settings {
        integration: integration.clone(),
        nats: nats.clone(),
        topology: topology.clone(),
        handlers: integration.handlers.keys().cloned().collect(),
        egress_endpoint: format!("http://{}", dev.egress_listen),
        shutdown_grace: Duration::from_secs(10),
        base_dir: hookyard_core::service::config_dir(&dev.file),
    };
    let l = bind(dev.worker_listen).await?;
    services.spawn("worker", |sd| hookyard_worker::run(worker, l, sd));

    let mut ingress = hookyard_ingress::Settings::new(integration.clone(), nats, topology);
    ingress.poll.egress_endpoint = Some(format!("http://{}", dev.egress_listen));
    let l = bind(dev.ingress_listen).await?;
    services.spawn("ingress", |sd| hookyard_ingress::run(ingress, l, sd));

    tracing::info!(ingress = %dev.ingress_listen, "hookyard dev is running; Ctrl-C stops it");
    stop_all(services.tasks, &shutdown).await
}

/// The token keys of `--token-keys` and the bound consent page listener, which together turn
/// on the token store; without keys, tokens stay in memory and no consent page is served.
async fn dev_token_keys(dev: &Dev) -> anyhow::Result<Option<(hookyard_token::Keys, TcpListener)>> {
    let Some(text) = &dev.token_keys else {
        return Ok(None);
    };
    // The error names the problem, never a key.
    let keys = hookyard_token::Keys::parse(text).context("invalid HOOKYARD_TOKEN_KEYS")?;
    let consent = bind(dev.consent_listen).await?;
    tracing::info!(address = %dev.consent_listen, "consent page listening");
    Ok(Some((keys, consent)))
}

/// Egress of `hookyard dev`: it reloads the file like the router, so a connection added while
/// trying things out is served without a restart, and records no audit (dev serves no admin
/// API to read it from).
fn dev_egress(dev: &Dev, integration: Arc<Integration>) -> hookyard_egress::Settings {
    hookyard_egress::Settings {
        integration,
        token_endpoint: Some(format!("http://{}", dev.token_listen)),
        reload: Some(hookyard_core::reload::Reload {
            path: dev.file.clone(),
            interval: hookyard_core::reload::Reload::DEFAULT_INTERVAL,
        }),
        audit: None,
    }
}

/// The services `hookyard dev` runs, all stopped by one `shutdown`.
struct DevServices {
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

impl DevServices {
    /// Runs the service `start` returns for the shutdown token, its failure labelled with
    /// `name` so the first error says which service stopped the others.
    fn spawn<F, E>(&mut self, name: &'static str, start: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let service = start(self.shutdown.clone());
        self.tasks.spawn(async move { service.await.context(name) });
    }
}

/// Waits for every service; the first one to fail stops the others.
async fn stop_all(
    mut tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let result = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
