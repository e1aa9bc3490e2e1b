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
    /// NATS server URL, or the URLs of a cluster's nodes separated by commas.
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
    /// Replicas of every stream and bucket hookyard creates: 1 for a single NATS server, 3 for
    /// a three-node cluster. Every service must be given the same value.
    #[arg(long, env = "HOOKYARD_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,
}

impl Common {
    /// The stream names of the namespace, with the limits these settings choose.
    pub fn topology(&self) -> Topology {
        let mut topology = Topology::new(&self.namespace);
        topology.limits.work_max_per_handler = self.work_max_per_handler;
        topology.limits.replicas = usize::from(self.stream_replicas);
        topology
    }
}

/// Connects to NATS. The client keeps reconnecting forever in the background, so a service
/// started before NATS, or one whose NATS restarts, recovers on its own. `urls` is one server
/// or a comma-separated list (the nodes of a cluster): the client connects to any of them and
/// moves to another when its node goes away.
pub async fn connect_nats(
    urls: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers = nats_servers(urls)?;
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
}

/// The servers of `HOOKYARD_NATS_URL`: one URL or several, separated by commas.
pub fn nats_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>, async_nats::ConnectError> {
    let invalid = |why: String| {
        async_nats::ConnectError::with_source(
            async_nats::ConnectErrorKind::ServerParse,
            format!("HOOKYARD_NATS_URL: {why}"),
        )
    };
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .enumerate()
        .map(|(i, url)| {
            // The entry's position, not its text: a URL may carry a password.
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| invalid(format!("entry {} is not a NATS server URL: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(invalid("no server given".to_owned()));
    }
    Ok(servers)
}

/// The exit code for configuration errors (EX_USAGE from sysexits.h, which `main`s use).
pub const EXIT_CONFIG: u8 = 64;

#[cfg(test)]
mod tests {
    use super::nats_servers;

    #[test]
    fn one_url_or_a_cluster_list_of_them() {
        assert_eq!(
            nats_servers("nats://127.0.0.1:4222")
                .expect("one url")
                .len(),
            1
        );
        let cluster = nats_servers("nats://nats-1:4222, nats://nats-2:4222,nats://nats-3:4222")
            .expect("a list");
        assert_eq!(cluster.len(), 3);
        assert_eq!(cluster[1].host(), "nats-2");
    }

    #[test]
    fn a_bad_list_names_the_setting_and_the_entry() {
        for bad in [
            "",
            " , ",
            "nats://a:4222,http://[::1",
            "nats://host:notaport",
            "nats://user:hunter2@host:99999",
        ] {
            let error = nats_servers(bad).expect_err(bad);
            let text = format!(
                "{error}: {}",
                std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            assert!(text.contains("HOOKYARD_NATS_URL"), "{bad:?}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
