//! Dev-only test harness: a real NATS JetStream server in a container, configured as in
//! production, and small helpers to wait for conditions.
//!
//! Owns: [`Nats`] (start — on a free or a given port, with `deploy/nats/nats-server.conf` or
//! another configuration — stop and restart a `nats:<deploy/nats/VERSION>` container),
//! [`wait_for`], [`lister`], a loopback partner whose list endpoint pages its records (for
//! polling sources), and [`process`], a service binary run as a child process with its health
//! probe. It does not build hookyard services: tests start those in-process on port 0 through
//! each service's `run` (one copy of each service crate in a test binary), or start the
//! binary Cargo built for the crate's tests (`CARGO_BIN_EXE_…`) when start-up is the subject.

pub mod lister;
pub mod oauth;
pub mod process;
pub mod tls;

use std::{future::Future, time::Duration};

use anyhow::{Context, bail};
use testcontainers::{
    ContainerAsync, GenericImage, ImageExt,
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
};
use tokio::io::AsyncReadExt;

/// NATS version, the one place it is written (also read by `.ci/run` and the compose files).
const NATS_VERSION: &str = include_str!("../../../deploy/nats/VERSION");
/// Production NATS settings (`sync_interval: always`, explicit store limits).
const NATS_CONF: &str = include_str!("../../../deploy/nats/nats-server.conf");

/// Image tag of the NATS server the tests run.
pub fn nats_tag() -> &'static str {
    NATS_VERSION.trim()
}

/// A NATS JetStream server in a container, reachable on a fixed loopback port that survives
/// a stop and start (so clients reconnect to the same address).
pub struct Nats {
    container: ContainerAsync<GenericImage>,
    port: u16,
}

/// A loopback port free at the time of the call, for a process started later on it.
pub fn free_port() -> anyhow::Result<u16> {
    let [port] = free_ports()?;
    Ok(port)
}

/// `N` distinct loopback ports free at the time of the call: each is held until all are
/// chosen, so two of them cannot be the same port.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let held = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&held) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

/// A listener on a free loopback port and its base URL (`http://127.0.0.1:<port>`), for a
/// service a test starts in its own process.
pub async fn listener() -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = l.local_addr()?;
    Ok((l, format!("http://{address}")))
}

impl Nats {
    /// Starts a fresh server with JetStream on file storage and `sync_interval: always`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on_a_free_port(NATS_CONF).await
    }

    /// [`Nats::start`] on loopback port `port`, e.g. one a service was told to use before
    /// any server listened on it.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::start_with(port, NATS_CONF).await
    }

    /// A server with configuration file `conf` instead of the production one, e.g.
    /// [`Nats::production_conf`] with a smaller `max_file_store`.
    pub async fn start_with_conf(conf: &str) -> anyhow::Result<Self> {
        Self::start_on_a_free_port(conf).await
    }

    /// Starts on a port free a moment ago; when something else took it before Docker bound it
    /// (tests run in parallel), tries another.
    async fn start_on_a_free_port(conf: &str) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_with(free_port()?, conf).await {
                Err(e) if attempt < 5 && format!("{e:#}").contains("port is already allocated") => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The production configuration file (`deploy/nats/nats-server.conf`).
    pub fn production_conf() -> &'static str {
        NATS_CONF
    }

    async fn start_with(port: u16, conf: &str) -> anyhow::Result<Self> {
        let container = GenericImage::new("nats", nats_tag())
            .with_exposed_port(4222.tcp())
            .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
            .with_copy_to("/etc/nats/hookyard.conf", conf.as_bytes().to_vec())
            .with_cmd(["--config", "/etc/nats/hookyard.conf"])
            .with_mapped_port(port, 4222.tcp())
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| {
                format!(
                    "failed to start nats:{} (build it with deploy/nats/build-local-image.sh)",
                    nats_tag()
                )
            })?;
        let nats = Self { container, port };
        nats.wait_ready(Duration::from_secs(30)).await?;
        Ok(nats)
    }

    /// A free loopback port, for a server started later with [`Nats::start_on`].
    pub fn free_port() -> anyhow::Result<u16> {
        free_port()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client as the services make it (reconnects forever).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        hookyard_core::settings::connect_nats(&self.url(), "hookyard-test")
            .await
            .context("failed to connect to nats")
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s), keeping its data.
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.container
            .stop_with_timeout(Some(5))
            .await
            .context("failed to stop nats")
    }

    /// Starts a stopped server again on the same port and waits until it accepts clients.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.container
            .start()
            .await
            .context("failed to start nats")?;
        self.wait_ready(Duration::from_secs(30)).await
    }

    async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let port = self.port;
        wait_for(limit, "nats to accept connections", || async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return false;
            };
            let mut buf = [0u8; 4];
            matches!(
                tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await,
                Ok(Ok(_)) if &buf == b"INFO"
            )
        })
        .await
    }
}

/// Polls `condition` every 50 ms until it holds, failing after `limit` with `what` in the error.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Python 3 interpreter itself, for tests running Python programs as subprocess steps: the
/// `python3` on `PATH` may be a version manager's shim, which needs variables a program with a
/// cleared environment does not get.
pub fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        String::from_utf8(out.stdout)
            .expect("a UTF-8 path")
            .trim()
            .to_owned()
    })
}

/// Every message stored in `stream`, in order (what a test checks after the services ran).
pub async fn stored(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<Vec<async_nats::jetstream::message::StreamMessage>> {
    let s = js.get_stream(stream).await?;
    let state = s.get_info().await?.state;
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push(m);
        }
    }
    Ok(out)
}

/// A namespace unique within this process, for streams and subjects of one test.
pub fn unique_namespace(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The value of one series of the OpenMetrics text at `GET {base}/metrics`, e.g.
/// `hookyard_router_waiting{handler="orders"}`; 0 when the series is absent.
pub async fn metric(base: &str, series: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nats_runs_jetstream_with_sync_always_and_survives_restart() -> anyhow::Result<()> {
        let nats = Nats::start().await?;
        let client = nats.client().await?;
        let js = async_nats::jetstream::new(client.clone());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "T".into(),
            subjects: vec!["t.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        js.publish("t.a", "x".into()).await?.await?;
        nats.stop().await?;
        nats.restart().await?;
        // The stored message outlives the restart: file storage, synced before the ack.
        let js2 = async_nats::jetstream::new(nats.client().await?);
        let mut stream = js2.get_stream("T").await?;
        assert_eq!(stream.info().await?.state.messages, 1);
        Ok(())
    }

    #[test]
    fn tag_is_a_version() {
        assert!(nats_tag().split('.').count() == 3, "{}", nats_tag());
    }
}
