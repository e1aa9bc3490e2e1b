//! `hookyard-egress`: makes partner calls on behalf of workers and pollers. See the library docs.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use hookyard_core::{Integration, config::SecretScope, service, settings::Common};

#[derive(Debug, Parser)]
#[command(
    name = "hookyard-egress",
    version,
    about = "Partner API calls for hookyard"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
    /// Address the gRPC API (EgressService and grpc.health.v1) listens on.
    #[arg(long, env = "HOOKYARD_EGRESS_LISTEN", default_value = "0.0.0.0:50052")]
    listen: SocketAddr,
    /// gRPC endpoint of the token service, for oauth2_client_credentials connections.
    #[arg(
        long,
        env = "HOOKYARD_TOKEN_ENDPOINT",
        default_value = "http://127.0.0.1:50053"
    )]
    token_endpoint: String,
    /// How often the integration file is checked for changes, so a connection added to it is
    /// served without a restart (e.g. `500ms`, `2s`); `0s` never reloads.
    #[arg(
        long,
        env = "HOOKYARD_EGRESS_RELOAD_INTERVAL",
        default_value = "2s",
        value_parser = humantime::parse_duration
    )]
    reload_interval: Duration,
    /// Record every outbound attempt in the JetStream stream HOOKYARD_AUDIT (subject
    /// `hookyard.audit.egress.<connection>.<event id>`) on the NATS at --nats-url; best effort, never fails a call.
    #[arg(long, env = "HOOKYARD_EGRESS_AUDIT", default_value_t = false)]
    audit: bool,
}

hookyard_core::service_command!(
    "HOOKYARD_EGRESS_HEALTH_ENDPOINT",
    "http://127.0.0.1:50052",
    "Checks the health of a running egress service; exits 0 when it is serving, else 1."
);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return command.answer().await;
    }
    let integration = match service::load_integration(&cli.common.config, SecretScope::Connections)
    {
        Ok(integration) => integration,
        Err(code) => return code,
    };
    let _traces = hookyard_core::telemetry::init("hookyard-egress", cli.common.log_format);
    service::exit_code("egress", serve(&cli, integration).await)
}

async fn serve(cli: &Cli, integration: Arc<Integration>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let shutdown = hookyard_core::shutdown::on_signal();
    let audit = if cli.audit {
        Some(audit(cli, &shutdown).await?)
    } else {
        None
    };
    let settings = hookyard_egress::Settings {
        integration,
        token_endpoint: Some(cli.token_endpoint.clone()),
        reload: (!cli.reload_interval.is_zero()).then(|| hookyard_core::reload::Reload {
            path: cli.common.config.clone(),
            interval: cli.reload_interval,
        }),
        audit,
    };
    let run = hookyard_egress::run(settings, listener, shutdown.clone());
    service::run_with_grace(run, &shutdown, cli.common.shutdown_grace)
        .await
        .context("failed to serve")
}

/// The audit of `--audit`, on the NATS at `--nats-url`; only an audited egress needs NATS.
async fn audit(
    cli: &Cli,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<hookyard_egress::Audit> {
    let nats = hookyard_core::settings::connect_nats(&cli.common.nats_url, "hookyard-egress")
        .await
        .context("failed to connect to nats")?;
    let topology = cli.common.topology();
    Ok(hookyard_egress::Audit::start(
        nats,
        &topology,
        shutdown.clone(),
    ))
}
