//! `hookyard-worker --handler NAME`: loads the integration file, connects to NATS and runs the
//! named handlers until SIGTERM/SIGINT. `hookyard-worker healthcheck` probes a running worker.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use hookyard_core::{
    Integration,
    config::SecretScope,
    service,
    settings::{Common, EXIT_CONFIG, connect_nats},
};

#[derive(Debug, Parser)]
#[command(
    name = "hookyard-worker",
    version,
    about = "Runs handlers: calls partner APIs through egress"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Handler to run (a key under [handlers]); repeat for several.
    #[arg(
        long = "handler",
        env = "HOOKYARD_WORKER_HANDLERS",
        value_delimiter = ','
    )]
    handlers: Vec<String>,
    /// gRPC endpoint of egress.
    #[arg(
        long = "egress",
        env = "HOOKYARD_EGRESS_ENDPOINT",
        default_value = "http://127.0.0.1:50052"
    )]
    egress: String,
    /// Address the gRPC health endpoint listens on.
    #[arg(long, env = "HOOKYARD_WORKER_LISTEN", default_value = "0.0.0.0:50054")]
    listen: SocketAddr,
    #[command(subcommand)]
    command: Option<Command>,
}

hookyard_core::service_command!(
    "HOOKYARD_WORKER_HEALTH_ENDPOINT",
    "http://127.0.0.1:50054",
    "Checks the health of a running worker; exits 0 when it is serving, 1 otherwise."
);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return command.answer().await;
    }
    let integration = match service::load_integration(&cli.common.config, SecretScope::None) {
        Ok(integration) => integration,
        Err(code) => return code,
    };
    if let Err(e) = hookyard_worker::check_handlers(&integration, &cli.handlers) {
        eprintln!("{e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    // Only this worker's handlers' program secrets: its environment needs no others.
    let mut integration = Arc::unwrap_or_clone(integration);
    if let Err(e) = integration.resolve_handler_env(&cli.handlers, &|name| std::env::var(name).ok())
    {
        eprintln!("{:#}", anyhow::Error::new(e));
        return ExitCode::from(EXIT_CONFIG);
    }
    let integration = Arc::new(integration);
    let _traces = hookyard_core::telemetry::init("hookyard-worker", cli.common.log_format);
    service::exit_code_with("worker", serve(cli, integration).await, |e| {
        let config = e
            .downcast_ref::<hookyard_worker::Error>()
            .is_some_and(hookyard_worker::Error::is_config);
        if config {
            ExitCode::from(EXIT_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    })
}

async fn serve(cli: Cli, integration: Arc<Integration>) -> anyhow::Result<()> {
    let nats = connect_nats(&cli.common.nats_url, "hookyard-worker")
        .await
        .context("failed to connect to nats")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let shutdown = hookyard_core::shutdown::on_signal();
    let grace = cli.common.shutdown_grace;
    let settings = hookyard_worker::Settings {
        integration,
        nats,
        topology: cli.common.topology(),
        handlers: cli.handlers,
        egress_endpoint: cli.egress,
        shutdown_grace: grace,
        base_dir: hookyard_core::service::config_dir(&cli.common.config),
    };
    let run = hookyard_worker::run(settings, listener, shutdown.clone());
    // The worker NAKs what is still running when the grace ends; this bounds the whole drain.
    let limit = grace + Duration::from_secs(10);
    Ok(service::run_with_grace(run, &shutdown, limit).await?)
}
