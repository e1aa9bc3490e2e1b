//! `hookyard-router`: loads the integration file, connects to NATS and runs the router until
//! SIGTERM/SIGINT. `hookyard-router healthcheck` probes a running router (for containers).

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookyard_core::{
    Integration,
    settings::{Common, EXIT_CONFIG, connect_nats},
    streams::Topology,
};
use hookyard_router::Reload;

#[derive(Debug, Parser)]
#[command(
    name = "hookyard-router",
    version,
    about = "Routes accepted events to handlers"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Address the gRPC health endpoint listens on.
    #[arg(long, env = "HOOKYARD_ROUTER_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// How often the integration file is checked for changes, which are then applied without a
    /// restart (e.g. `500ms`, `2s`); `0s` never reloads.
    #[arg(
        long,
        env = "HOOKYARD_ROUTER_RELOAD_INTERVAL",
        default_value = "2s",
        value_parser = humantime::parse_duration
    )]
    reload_interval: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the health of a running router; exits 0 when it is serving, 1 otherwise.
    Healthcheck {
        /// gRPC endpoint of the router.
        #[arg(
            long,
            env = "HOOKYARD_ROUTER_HEALTH_ENDPOINT",
            default_value = "http://127.0.0.1:50051"
        )]
        endpoint: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { endpoint }) = &cli.command {
        return match hookyard_core::health::probe(endpoint, Duration::from_secs(3)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let integration = match Integration::load_scoped(
        &cli.common.config,
        hookyard_core::config::SecretScope::None,
    ) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    hookyard_core::telemetry::init("hookyard-router", cli.common.log_format);
    match serve(cli, integration).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "router failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli, integration: Arc<Integration>) -> anyhow::Result<()> {
    let nats = connect_nats(&cli.common.nats_url, "hookyard-router")
        .await
        .context("failed to connect to nats")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let shutdown = hookyard_core::shutdown::on_signal();
    let reload = (!cli.reload_interval.is_zero()).then(|| Reload {
        path: cli.common.config.clone(),
        interval: cli.reload_interval,
    });
    let settings = hookyard_router::Settings {
        integration,
        nats,
        topology: Topology::new(&cli.common.namespace),
        reload,
    };
    let grace = cli.common.shutdown_grace;
    let run = hookyard_router::run(settings, listener, shutdown.clone());
    tokio::select! {
        ran = run => ran.context("router failed"),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("draining took longer than the shutdown grace, exiting");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_interval_defaults_to_the_library_default_and_zero_parses() {
        let cli = Cli::try_parse_from(["hookyard-router"]).expect("defaults parse");
        assert_eq!(cli.reload_interval, Reload::DEFAULT_INTERVAL);
        let cli =
            Cli::try_parse_from(["hookyard-router", "--reload-interval", "0s"]).expect("0s parses");
        assert!(cli.reload_interval.is_zero());
    }
}
