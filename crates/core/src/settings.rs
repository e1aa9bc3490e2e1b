//! Service settings shared by every binary: defaults, then `HOOKYARD_*` environment variables,
//! then command-line flags. The integration file path is one of them.

use std::{path::PathBuf, time::Duration};

use crate::{
    streams::{DEFAULT_WORK_MAX_PER_HANDLER, Topology},
    telemetry::LogFormat,
};

/// Settings every service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Integration file to load.
    #[arg(
        long,
        env = "HOOKYARD_CONFIG",
        default_value = "/etc/hookyard/integration.toml"
    )]
    pub config: PathBuf,
    /// NATS server URL.
    #[arg(
        long,
        env = "HOOKYARD_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Prefix for stream and subject names, to run isolated hookyards on one NATS (default none).
    #[arg(long, env = "HOOKYARD_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Log format.
    #[arg(long, env = "HOOKYARD_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// How long in-flight work may take to finish after SIGTERM.
    #[arg(long, env = "HOOKYARD_SHUTDOWN_GRACE", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Work items one handler may have queued in `HOOKYARD_WORK`; the router parks the rest in
    /// `HOOKYARD_WAIT` until its workers make room. Every service must be given the same value
    /// (each one that creates the work queue applies it).
    #[arg(long, env = "HOOKYARD_WORK_MAX_PER_HANDLER", default_value_t = DEFAULT_WORK_MAX_PER_HANDLER, value_parser = clap::value_parser!(i64).range(1..))]
    pub work_max_per_handler: i64,
}

impl Common {
    /// The stream names of the namespace, with the limits these settings choose.
    pub fn topology(&self) -> Topology {
        let mut topology = Topology::new(&self.namespace);
        topology.limits.work_max_per_handler = self.work_max_per_handler;
        topology
    }
}

/// Connects to NATS. The client keeps reconnecting forever in the background, so a service
/// started before NATS, or one whose NATS restarts, recovers on its own.
pub async fn connect_nats(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// The exit code for configuration errors (EX_USAGE from sysexits.h, which `main`s use).
pub const EXIT_CONFIG: u8 = 64;
