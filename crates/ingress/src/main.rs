//! `hookyard-ingress`: loads the integration file, connects to NATS and serves the sources.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use hookyard_core::{Integration, config::SecretScope, service, settings::Common};

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
    /// Longest time a client may take to send a request's line and headers, and longest idle
    /// time of a kept-alive connection; slower connections are closed (the body has each
    /// source's `read_timeout`).
    #[arg(long, env = "HOOKYARD_INGRESS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// Largest request line plus headers, in bytes (at least 8192); larger requests get 431.
    #[arg(long, env = "HOOKYARD_INGRESS_MAX_HEADER_BYTES", default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(8192..))]
    max_header_bytes: u32,
    /// Group commit: most events stored in one JetStream batch (1 to 1000; 1 publishes each
    /// event on its own).
    #[arg(long, env = "HOOKYARD_INGRESS_BATCH_MAX", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_max: u16,
    /// Longest wait for more events once a batch has its first (0s: never wait; batches still
    /// grow while earlier ones are being stored).
    #[arg(long, env = "HOOKYARD_INGRESS_BATCH_LINGER", default_value = "0s", value_parser = humantime::parse_duration)]
    batch_linger: Duration,
    /// Most events waiting to be stored; beyond it requests get 503 with Retry-After at once.
    #[arg(long, env = "HOOKYARD_INGRESS_PUBLISH_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    publish_queue: u32,
    /// gRPC endpoint of egress, which polling sources call their partners through (required
    /// when the integration file has a source with `poll`).
    #[arg(long = "egress", env = "HOOKYARD_EGRESS_ENDPOINT")]
    egress: Option<String>,
    /// How long a replica's lease on a polling source lasts without renewal: when it dies,
    /// another replica takes the source over within this plus the source's interval.
    #[arg(long, env = "HOOKYARD_INGRESS_POLL_LEASE_TTL", default_value = "15s", value_parser = parse_lease_ttl)]
    poll_lease_ttl: Duration,
}

/// A lease TTL: whole seconds (NATS message TTLs are), at least 2 s so it can be renewed.
fn parse_lease_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if ttl < Duration::from_secs(2) || ttl.subsec_nanos() != 0 {
        return Err("must be whole seconds, at least 2s".to_owned());
    }
    Ok(ttl)
}

hookyard_core::service_command!(
    "HOOKYARD_INGRESS_HEALTH_ENDPOINT",
    "http://127.0.0.1:8080",
    "Probes a running ingress's gRPC health; exits 0 when serving, 1 otherwise."
);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return command.answer().await;
    }
    let integration = match service::load_integration(&cli.common.config, SecretScope::Sources) {
        Ok(integration) => integration,
        Err(code) => return code,
    };
    let polling: Vec<&str> = integration
        .sources
        .iter()
        .filter(|(_, source)| source.poll.is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    if !polling.is_empty() && cli.egress.is_none() {
        eprintln!(
            "error: sources {} poll partner APIs through egress: set HOOKYARD_EGRESS_ENDPOINT (--egress)",
            polling.join(", ")
        );
        return ExitCode::from(hookyard_core::settings::EXIT_CONFIG);
    }
    let _traces = hookyard_core::telemetry::init("hookyard-ingress", cli.common.log_format);
    service::exit_code("ingress", serve(cli, integration).await)
}

async fn serve(cli: Cli, integration: Arc<Integration>) -> anyhow::Result<()> {
    let nats = hookyard_core::settings::connect_nats(&cli.common.nats_url, "hookyard-ingress")
        .await
        .context("failed to connect to nats")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let mut settings = hookyard_ingress::Settings::new(integration, nats, cli.common.topology());
    settings.publish_timeout = cli.publish_timeout;
    settings.batch = hookyard_ingress::publish::BatchSettings {
        max_messages: usize::from(cli.batch_max),
        linger: cli.batch_linger,
        queue: cli.publish_queue as usize,
    };
    settings.poll = hookyard_ingress::poll::PollSettings {
        egress_endpoint: cli.egress.clone(),
        lease_ttl: cli.poll_lease_ttl,
    };
    settings.server = hookyard_ingress::ServerLimits {
        header_read_timeout: cli.header_read_timeout,
        max_header_bytes: usize::try_from(cli.max_header_bytes).unwrap_or(usize::MAX),
    };
    let shutdown = hookyard_core::shutdown::on_signal();
    let run = hookyard_ingress::run(settings, listener, shutdown.clone());
    // Draining: open connections (a gRPC health watch never ends on its own) get the grace period.
    service::run_with_grace(run, &shutdown, cli.common.shutdown_grace)
        .await
        .context("ingress failed")
}
