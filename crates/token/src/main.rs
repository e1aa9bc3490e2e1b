//! `hookyard-token`: serves OAuth 2.0 access tokens to egress. See the library docs.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookyard_core::{Integration, config::SecretScope, service, settings::Common};

#[derive(Debug, Parser)]
#[command(
    name = "hookyard-token",
    version,
    about = "OAuth 2.0 tokens for hookyard connections"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
    /// Address the gRPC API (TokenService and grpc.health.v1) listens on.
    #[arg(long, env = "HOOKYARD_TOKEN_LISTEN", default_value = "0.0.0.0:50053")]
    listen: SocketAddr,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the health of a running token service; exits 0 when it is serving, else 1.
    Healthcheck {
        /// gRPC endpoint of the service to check.
        #[arg(
            long,
            env = "HOOKYARD_TOKEN_HEALTH_ENDPOINT",
            default_value = "http://127.0.0.1:50053"
        )]
        endpoint: String,
    },
}

/// How long `healthcheck` waits for an answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { endpoint }) = &cli.command {
        return service::healthcheck(endpoint, HEALTHCHECK_TIMEOUT).await;
    }
    let integration =
        match service::load_integration(&cli.common.config, SecretScope::OAuth2Clients) {
            Ok(integration) => integration,
            Err(code) => return code,
        };
    hookyard_core::telemetry::init("hookyard-token", cli.common.log_format);
    service::exit_code("token service", serve(&cli, integration).await)
}

async fn serve(cli: &Cli, integration: Arc<Integration>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let shutdown = hookyard_core::shutdown::on_signal();
    let settings = hookyard_token::Settings { integration };
    let run = hookyard_token::run(settings, listener, shutdown.clone());
    service::run_with_grace(run, &shutdown, cli.common.shutdown_grace)
        .await
        .context("failed to serve")
}
