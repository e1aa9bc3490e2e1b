//! `hookyard-router`: loads the integration file, connects to NATS and runs the router until
//! SIGTERM/SIGINT. `hookyard-router healthcheck` probes a running router (for containers).

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookyard_core::{
    Integration,
    config::SecretScope,
    service,
    settings::{Common, connect_nats},
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
        return service::healthcheck(endpoint, service::HEALTHCHECK_TIMEOUT).await;
    }
    let integration = match service::load_integration(&cli.common.config, SecretScope::None) {
        Ok(integration) => integration,
        Err(code) => return code,
    };
    hookyard_core::telemetry::init("hookyard-router", cli.common.log_format);
    service::exit_code("router", serve(cli, integration).await)
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
    let run = hookyard_router::run(settings, listener, shutdown.clone());
    service::run_with_grace(run, &shutdown, cli.common.shutdown_grace)
        .await
        .context("router failed")
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
