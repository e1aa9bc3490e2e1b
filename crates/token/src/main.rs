//! `hookyard-token`: serves OAuth 2.0 access tokens to egress. See the library docs.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookyard_core::{Integration, settings::Common};

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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { endpoint }) = &cli.command {
        return match hookyard_core::health::probe(endpoint, Duration::from_secs(5)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("unhealthy: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let integration = match Integration::load_scoped(
        &cli.common.config,
        hookyard_core::config::SecretScope::OAuth2Clients,
    ) {
        Ok(integration) => integration,
        Err(error) => {
            // `{:#}` adds the causes, e.g. why the file cannot be read.
            eprintln!("{:#}", anyhow::Error::new(error));
            return ExitCode::from(hookyard_core::settings::EXIT_CONFIG);
        }
    };
    hookyard_core::telemetry::init("hookyard-token", cli.common.log_format);
    match serve(&cli, integration).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "token service failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: &Cli, integration: Integration) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let shutdown = hookyard_core::shutdown::on_signal();
    let settings = hookyard_token::Settings {
        integration: Arc::new(integration),
    };
    let run = hookyard_token::run(settings, listener, shutdown.clone());
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => return result.context("failed to serve"),
        () = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(cli.common.shutdown_grace, run).await {
        Ok(result) => result.context("failed to drain"),
        Err(_) => {
            tracing::warn!("shutdown grace period over, requests in flight are dropped");
            Ok(())
        }
    }
}
