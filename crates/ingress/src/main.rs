//! `hookyard-ingress`: loads the integration file, connects to NATS and serves the sources.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookyard_core::{
    Integration, config::SecretScope, service, settings::Common, streams::Topology,
};

#[derive(Debug, Parser)]
#[command(name = "hookyard-ingress", version, about = "hookyard webhook ingress")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
    /// Address the webhook, health and gRPC health endpoints listen on.
    #[arg(long, env = "HOOKYARD_INGRESS_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Longest wait for JetStream's acknowledgement before answering 503.
    #[arg(long, env = "HOOKYARD_INGRESS_PUBLISH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    publish_timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probes a running ingress's gRPC health; exits 0 when serving, 1 otherwise.
    Healthcheck {
        /// gRPC endpoint of the ingress to probe.
        #[arg(
            long,
            env = "HOOKYARD_INGRESS_HEALTH_ENDPOINT",
            default_value = "http://127.0.0.1:8080"
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
    let integration = match service::load_integration(&cli.common.config, SecretScope::Sources) {
        Ok(integration) => integration,
        Err(code) => return code,
    };
    hookyard_core::telemetry::init("hookyard-ingress", cli.common.log_format);
    service::exit_code("ingress", serve(cli, integration).await)
}

async fn serve(cli: Cli, integration: Arc<Integration>) -> anyhow::Result<()> {
    let nats = hookyard_core::settings::connect_nats(&cli.common.nats_url, "hookyard-ingress")
        .await
        .context("failed to connect to nats")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let mut settings =
        hookyard_ingress::Settings::new(integration, nats, Topology::new(&cli.common.namespace));
    settings.publish_timeout = cli.publish_timeout;
    let shutdown = hookyard_core::shutdown::on_signal();
    let run = hookyard_ingress::run(settings, listener, shutdown.clone());
    // Draining: open connections (a gRPC health watch never ends on its own) get the grace period.
    service::run_with_grace(run, &shutdown, cli.common.shutdown_grace)
        .await
        .context("ingress failed")
}
