//! `hookyard-demo`: serves the stand-in partner API and authorization server of the quickstart.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookyard_core::{service, telemetry::LogFormat};
use hookyard_demo::Settings;

/// How long in-flight requests may take to finish after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "hookyard-demo",
    version,
    about = "Stand-in partner API and OAuth 2.0 authorization server for the hookyard quickstart (not for production)",
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address the partner API, token endpoint and /_demo endpoints listen on.
    #[arg(long, env = "HOOKYARD_DEMO_LISTEN", default_value = "0.0.0.0:9000")]
    listen: SocketAddr,
    /// OAuth 2.0 client id accepted by POST /oauth2/token.
    #[arg(long, env = "DEMO_CLIENT_ID", default_value = "hookyard")]
    client_id: String,
    /// OAuth 2.0 client secret accepted by POST /oauth2/token.
    #[arg(
        long,
        env = "DEMO_CLIENT_SECRET",
        required = true,
        hide_env_values = true
    )]
    client_secret: Option<String>,
    /// User accepted by partner calls with HTTP basic authentication.
    #[arg(long, env = "DEMO_BASIC_USER", default_value = "acme-shop")]
    basic_user: String,
    /// Password accepted by partner calls with HTTP basic authentication.
    #[arg(
        long,
        env = "DEMO_BASIC_PASSWORD",
        required = true,
        hide_env_values = true
    )]
    basic_password: Option<String>,
    /// Lifetime of issued access tokens, e.g. `1h` or `90s`.
    #[arg(long, env = "DEMO_TOKEN_TTL", default_value = "3600s", value_parser = humantime::parse_duration)]
    token_ttl: Duration,
    /// Most partner calls kept for /_demo/calls; the oldest are dropped past it.
    #[arg(long, env = "DEMO_MAX_CALLS", default_value_t = 100_000)]
    max_calls: usize,
    /// Log output format.
    #[arg(long, env = "HOOKYARD_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs as the compose example's `subprocess` step: reads the worker's input document on
    /// stdin and prints the order's risk score as JSON.
    Enrich,
    /// Probes a running demo server; exits 0 when it answers 200, 1 otherwise.
    Healthcheck {
        /// Health URL of the demo server to probe.
        #[arg(
            long,
            env = "HOOKYARD_DEMO_HEALTH_URL",
            default_value = "http://127.0.0.1:9000/_demo/healthz"
        )]
        url: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Enrich) = &cli.command {
        return hookyard_demo::enrich::run();
    }
    if let Some(Command::Healthcheck { url }) = &cli.command {
        return match probe(url).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("unhealthy: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // clap enforces both when no subcommand is given; this only guards the types.
    let (Some(client_secret), Some(basic_password)) =
        (cli.client_secret.clone(), cli.basic_password.clone())
    else {
        eprintln!(
            "DEMO_CLIENT_SECRET (--client-secret) and DEMO_BASIC_PASSWORD (--basic-password) are required"
        );
        return ExitCode::from(hookyard_core::settings::EXIT_CONFIG);
    };
    let _traces = hookyard_core::telemetry::init("hookyard-demo", cli.log_format);
    let settings = Settings {
        client_id: cli.client_id.clone(),
        client_secret,
        basic_user: cli.basic_user.clone(),
        basic_password,
        token_ttl: cli.token_ttl,
        max_calls: cli.max_calls,
    };
    service::exit_code("demo server", serve(cli.listen, settings).await)
}

async fn serve(listen: SocketAddr, settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let shutdown = hookyard_core::shutdown::on_signal();
    // A task, so a panic in the server is reported as its failure.
    let server = tokio::spawn(hookyard_demo::run(settings, listener, shutdown.clone()));
    let served = async {
        server
            .await
            .context("demo server task failed")?
            .context("demo server stopped")
    };
    service::run_with_grace(served, &shutdown, GRACE).await
}

async fn probe(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .context("failed to build http client")?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("failed to reach {url}"))?;
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::OK,
        "{url} answered {}",
        response.status()
    );
    Ok(())
}
