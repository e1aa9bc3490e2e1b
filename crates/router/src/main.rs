//! `hookyard-router`: loads the integration file, connects to NATS and runs the router until
//! SIGTERM/SIGINT. `hookyard-router healthcheck` probes a running router (for containers).

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use hookyard_core::{
    Integration,
    config::{Secret, SecretScope},
    service,
    settings::{Common, connect_nats},
};
use hookyard_router::Reload;
use secrecy::SecretString;

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
    /// Address the admin API (gRPC and JSON over HTTP) listens on, when a token is set.
    #[arg(
        long,
        env = "HOOKYARD_ROUTER_ADMIN_LISTEN",
        default_value = "127.0.0.1:50060"
    )]
    admin_listen: SocketAddr,
    /// Where the admin API's bearer token is read from: a secret reference,
    /// `${env:NAME}` or `${file:/run/secrets/name}` (at least 16 printable characters). Without
    /// it the admin API is not served.
    #[arg(long, env = "HOOKYARD_ROUTER_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// gRPC endpoint of egress, for the web console's "send a test request" on a connection
    /// (e.g. `http://egress:50052`). Without it the console's test request is off.
    #[arg(long, env = "HOOKYARD_ROUTER_EGRESS_ENDPOINT", value_parser = http_url)]
    egress_endpoint: Option<String>,
    /// Base URL of the token service's consent page as a browser reaches it (e.g.
    /// `http://127.0.0.1:50055`), for the web console's Connect link of OAuth 2.0
    /// authorization-code connections. Without it the console shows no link.
    #[arg(long, env = "HOOKYARD_ROUTER_CONSOLE_CONSENT_URL", value_parser = http_url)]
    console_consent_url: Option<String>,
    /// gRPC endpoint of the token service (e.g. `http://token:50053`), for the web console's
    /// consent state of OAuth 2.0 authorization-code connections. Without it the console shows
    /// no state.
    #[arg(long, env = "HOOKYARD_ROUTER_TOKEN_ENDPOINT", value_parser = http_url)]
    token_endpoint: Option<String>,
    /// Deliveries of one event after which the router stops trying to route it and
    /// dead-letters it on `hookyard.dlq.unrouted` with the reason `router_gave_up`.
    #[arg(long, env = "HOOKYARD_ROUTER_MAX_DELIVER", default_value_t = hookyard_router::ROUTER_MAX_DELIVER, value_parser = clap::value_parser!(u32).range(1..))]
    max_deliver: u32,
    #[command(subcommand)]
    command: Option<Command>,
}

hookyard_core::service_command!(
    "HOOKYARD_ROUTER_HEALTH_ENDPOINT",
    "http://127.0.0.1:50051",
    "Checks the health of a running router; exits 0 when it is serving, 1 otherwise."
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
    let admin_token = match cli.admin_token.as_deref().map(admin_token).transpose() {
        Ok(token) => token,
        Err(message) => {
            eprintln!("error: HOOKYARD_ROUTER_ADMIN_TOKEN (--admin-token): {message}");
            return ExitCode::from(hookyard_core::settings::EXIT_CONFIG);
        }
    };
    let _traces = hookyard_core::telemetry::init("hookyard-router", cli.common.log_format);
    service::exit_code("router", serve(cli, integration, admin_token).await)
}

/// An `http://` or `https://` URL with a host.
fn http_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or("expected an http:// or https:// URL")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the URL has no host".to_owned());
    }
    Ok(text.to_owned())
}

/// Reads the admin token from its reference and checks it; the message never holds the value.
fn admin_token(reference: &str) -> Result<SecretString, String> {
    let secret = Secret::resolve_reference(reference, &|name| std::env::var(name).ok())
        .map_err(|e| e.to_string())?;
    let token = SecretString::from(secret.expose().to_owned());
    hookyard_router::admin::check_token(&token).map_err(|e| e.to_string())?;
    Ok(token)
}

async fn serve(
    cli: Cli,
    integration: Arc<Integration>,
    admin_token: Option<SecretString>,
) -> anyhow::Result<()> {
    let nats = connect_nats(&cli.common.nats_url, "hookyard-router")
        .await
        .context("failed to connect to nats")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let admin = match admin_token {
        Some(token) => {
            let listener = tokio::net::TcpListener::bind(cli.admin_listen)
                .await
                .with_context(|| format!("failed to listen on {}", cli.admin_listen))?;
            let console = hookyard_router::admin::ConsoleSettings {
                egress_endpoint: cli.egress_endpoint.clone(),
                consent_url: cli.console_consent_url.clone(),
                token_endpoint: cli.token_endpoint.clone(),
            };
            Some(hookyard_router::admin::Settings {
                listener,
                token,
                console,
            })
        }
        None => {
            tracing::info!("no admin token set (HOOKYARD_ROUTER_ADMIN_TOKEN): admin api off");
            None
        }
    };
    let shutdown = hookyard_core::shutdown::on_signal();
    let reload = (!cli.reload_interval.is_zero()).then(|| Reload {
        path: cli.common.config.clone(),
        interval: cli.reload_interval,
    });
    let settings = hookyard_router::Settings {
        integration,
        nats,
        topology: cli.common.topology(),
        reload,
        admin,
        max_deliver: cli.max_deliver,
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

    #[test]
    fn admin_tokens_must_be_references_and_long_enough() {
        assert!(admin_token("literal-token-value-long").is_err());
        assert!(admin_token("${env:HOOKYARD_TEST_SURELY_UNSET_VARIABLE}").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").expect("write");
        let short = admin_token(&format!("${{file:{}}}", path.display()));
        assert!(short.expect_err("short").contains("16"));
        std::fs::write(&path, "a-long-enough-admin-token\n").expect("write");
        assert!(admin_token(&format!("${{file:{}}}", path.display())).is_ok());
    }
}
