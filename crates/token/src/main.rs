//! `hookyard-token`: serves OAuth 2.0 access tokens to egress. See the library docs.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use hookyard_core::{Integration, config::SecretScope, service, settings::Common};
use hookyard_token::{Keys, Policy, StoreSettings};
use secrecy::{ExposeSecret, SecretString};

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
    /// Address the consent page (HTTP) listens on; it runs only with a token key.
    #[arg(
        long,
        env = "HOOKYARD_TOKEN_HTTP_LISTEN",
        default_value = "0.0.0.0:50055"
    )]
    http_listen: SocketAddr,
    /// Token encryption keys, `<version>:<base64 of 32 bytes>` separated by commas; the highest
    /// version encrypts, all decrypt. With a key, tokens are kept encrypted in NATS KV.
    /// Prefer the environment variable or the file: arguments show in process lists.
    #[arg(long, env = "HOOKYARD_TOKEN_KEYS", hide_env_values = true, value_parser = secret)]
    token_keys: Option<SecretString>,
    /// File holding the token encryption keys, one `<version>:<base64>` per line (instead of
    /// HOOKYARD_TOKEN_KEYS).
    #[arg(long, env = "HOOKYARD_TOKEN_KEY_FILE", conflicts_with = "token_keys")]
    token_key_file: Option<PathBuf>,
    /// Renew access tokens this long before they expire (default: 10 % of the lifetime, at most
    /// 30 s).
    #[arg(long, env = "HOOKYARD_TOKEN_REFRESH_SKEW", value_parser = humantime::parse_duration)]
    refresh_skew: Option<Duration>,
    /// How often the integration file is checked for changes, so an OAuth 2.0 connection added
    /// to it is served without a restart (e.g. `500ms`, `2s`); `0s` never reloads.
    #[arg(
        long,
        env = "HOOKYARD_TOKEN_RELOAD_INTERVAL",
        default_value = "2s",
        value_parser = humantime::parse_duration
    )]
    reload_interval: Duration,
}

hookyard_core::service_command!(
    "HOOKYARD_TOKEN_HEALTH_ENDPOINT",
    "http://127.0.0.1:50053",
    "Checks the health of a running token service; exits 0 when it is serving, else 1."
);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        return command.answer().await;
    }
    let integration =
        match service::load_integration(&cli.common.config, SecretScope::OAuth2Clients) {
            Ok(integration) => integration,
            Err(code) => return code,
        };
    let keys = match keys(&cli) {
        Ok(keys) => keys,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::from(hookyard_core::settings::EXIT_CONFIG);
        }
    };
    let _traces = hookyard_core::telemetry::init("hookyard-token", cli.common.log_format);
    service::exit_code_with("token service", serve(&cli, integration, keys).await, |e| {
        match e.downcast_ref::<hookyard_token::Error>() {
            Some(
                hookyard_token::Error::NeedsStore(_)
                | hookyard_token::Error::Url { .. }
                | hookyard_token::Error::PrivateKey(_)
                | hookyard_token::Error::Client(_)
                | hookyard_token::Error::AllowPrivate(_)
                | hookyard_token::Error::TokenUrlRefused { .. },
            ) => ExitCode::from(hookyard_core::settings::EXIT_CONFIG),
            _ => ExitCode::FAILURE,
        }
    })
}

/// Keeps a key list out of `Debug` output.
fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text.to_owned()))
}

/// The token keys from `--token-keys` or `--token-key-file`, if any. Errors never quote a key.
fn keys(cli: &Cli) -> anyhow::Result<Option<Arc<Keys>>> {
    let text = match (&cli.token_keys, &cli.token_key_file) {
        (Some(text), _) => text.expose_secret().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token key file {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    let keys = Keys::parse(&text).context("invalid token keys")?;
    Ok(Some(Arc::new(keys)))
}

async fn serve(
    cli: &Cli,
    integration: Arc<Integration>,
    keys: Option<Arc<Keys>>,
) -> anyhow::Result<()> {
    let listener = bind(cli.listen).await?;
    let shutdown = hookyard_core::shutdown::on_signal();
    let store = match keys {
        Some(keys) => Some(store(cli, keys).await?),
        None => {
            tracing::warn!(
                "no token key: tokens are kept in memory only and the consent page is off"
            );
            None
        }
    };
    let settings = hookyard_token::Settings {
        integration,
        store,
        reload: (!cli.reload_interval.is_zero()).then(|| hookyard_core::reload::Reload {
            path: cli.common.config.clone(),
            interval: cli.reload_interval,
        }),
    };
    let run = hookyard_token::run(settings, listener, shutdown.clone());
    service::run_with_grace(run, &shutdown, cli.common.shutdown_grace)
        .await
        .context("failed to serve")
}

/// The token store sealed with `keys`, with the consent page on `--http-listen`: tokens from
/// a consent must be kept where every replica and restart finds them.
async fn store(cli: &Cli, keys: Arc<Keys>) -> anyhow::Result<StoreSettings> {
    tracing::info!(
        key_version = keys.current_version(),
        "token store encryption key loaded"
    );
    let consent = bind(cli.http_listen).await?;
    let nats = hookyard_core::settings::connect_nats(&cli.common.nats_url, "hookyard-token")
        .await
        .context("failed to connect to nats")?;
    Ok(StoreSettings {
        nats,
        topology: cli.common.topology(),
        keys,
        policy: Policy {
            refresh_skew: cli.refresh_skew,
            ..Policy::default()
        },
        consent: Some(consent),
    })
}

async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("failed to listen on {address}"))
}
