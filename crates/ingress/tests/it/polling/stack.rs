//! NATS, egress, router and worker in this process; ingress replicas as child processes.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use hookyard_core::{Integration, streams::Topology};
use hookyard_testkit::{
    Nats,
    lister::{SOURCE, source_config},
    unique_namespace, wait_for,
};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

/// Generous bound for anything the pipeline does; tests wait on conditions, not on time.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// Lease TTL of the ingress replicas.
pub const LEASE_TTL: Duration = Duration::from_secs(2);

/// The lister's orders polled on `{prefix}/v1/orders` (cursor pagination) through `erp`,
/// which also carries the handler's calls to the sink.
pub fn config(partner: &str, prefix: &str) -> String {
    let source = source_config(
        prefix,
        r#"{ type = "cursor", next = ".next", param = "offset" }"#,
        "erp",
    );
    format!(
        r#"{source}
[connections.erp]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
timeout = "1s"
retry = {{ max_attempts = 1 }}
"#
    )
}

/// The in-process services.
pub struct Stack {
    pub nats: Nats,
    pub client: async_nats::Client,
    pub topology: Topology,
    pub egress: String,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Stack {
    /// Starts NATS, egress, the router and (with `handler`) a worker for `config`.
    pub async fn start(config: &str, handler: bool) -> anyhow::Result<Self> {
        let integration = Arc::new(Integration::parse(config, &|_| None).context("config")?);
        let nats = Nats::start().await?;
        let topology = Topology::new(&unique_namespace("poll"));
        let shutdown = CancellationToken::new();
        let (egress_l, egress) = hookyard_testkit::listener().await?;
        let settings = hookyard_egress::Settings {
            integration: integration.clone(),
            token_endpoint: None,
            reload: None,
            audit: None,
        };
        tokio::spawn(hookyard_egress::run(settings, egress_l, shutdown.clone()));
        let (router_l, _) = hookyard_testkit::listener().await?;
        let settings = hookyard_router::Settings {
            integration: integration.clone(),
            nats: nats.client().await?,
            topology: topology.clone(),
            reload: None,
            admin: None,
            max_deliver: hookyard_router::ROUTER_MAX_DELIVER,
        };
        tokio::spawn(hookyard_router::run(settings, router_l, shutdown.clone()));
        if handler {
            let (worker_l, _) = hookyard_testkit::listener().await?;
            let settings = hookyard_worker::Settings {
                integration: integration.clone(),
                nats: nats.client().await?,
                topology: topology.clone(),
                handlers: integration.handlers.keys().cloned().collect(),
                egress_endpoint: egress.clone(),
                shutdown_grace: Duration::from_secs(5),
                base_dir: std::env::current_dir()?,
            };
            tokio::spawn(hookyard_worker::run(settings, worker_l, shutdown.clone()));
        }
        Ok(Self {
            client: nats.client().await?,
            nats,
            topology,
            egress,
            dir: tempfile::tempdir()?,
            shutdown,
        })
    }

    /// Starts a `hookyard-ingress` process named `name` serving `config`, and waits until it
    /// is ready.
    pub async fn ingress(&self, name: &str, config: &str) -> anyhow::Result<Replica> {
        let file = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, config)?;
        let log = self.dir.path().join(format!("{name}.log"));
        let port = hookyard_testkit::free_port()?;
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookyard-ingress"))
            .arg("--config")
            .arg(&file)
            .args(["--nats-url", &self.nats.url()])
            .args(["--namespace", self.topology.namespace()])
            .args(["--listen", &address.to_string()])
            .args(["--egress", &self.egress])
            .args(["--poll-lease-ttl", &format!("{}s", LEASE_TTL.as_secs())])
            .args(["--log-format", "json"])
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let replica = Replica {
            child,
            url: format!("http://{address}"),
            log,
        };
        let http = reqwest::Client::new();
        let ready = format!("{}/readyz", replica.url);
        wait_for(PATIENCE, &format!("ingress {name} to be ready"), || async {
            matches!(http.get(&ready).send().await, Ok(r) if r.status() == 200)
        })
        .await?;
        Ok(replica)
    }

    /// Messages stored in `HOOKYARD_IN`.
    pub async fn events(&self) -> anyhow::Result<u64> {
        let js = async_nats::jetstream::new(self.client.clone());
        let mut stream = js.get_stream(self.topology.in_stream()).await?;
        Ok(stream.info().await?.state.messages)
    }

    /// The stored cursor state of the source, `None` before the first successful poll.
    pub async fn cursor(&self) -> anyhow::Result<Option<serde_json::Value>> {
        let js = async_nats::jetstream::new(self.client.clone());
        let kv = js
            .get_key_value(self.topology.poll_cursors_bucket())
            .await?;
        Ok(match kv.get(SOURCE).await? {
            Some(value) => Some(serde_json::from_slice(&value)?),
            None => None,
        })
    }

    /// True when the router and the handler's consumer have nothing pending or unacknowledged.
    pub async fn idle(&self) -> bool {
        let js = async_nats::jetstream::new(self.client.clone());
        let consumer = |stream: String, name: String| {
            let js = js.clone();
            async move {
                let Ok(stream) = js.get_stream(stream).await else {
                    return false;
                };
                matches!(stream.consumer_info(name).await,
                    Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0)
            }
        };
        consumer(self.topology.in_stream(), self.topology.router_consumer()).await
            && consumer(
                self.topology.work_stream(),
                self.topology.handler_consumer("orders"),
            )
            .await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A running `hookyard-ingress` process.
pub struct Replica {
    child: Child,
    /// Its listener's base URL (`/metrics`, `/readyz`).
    pub url: String,
    log: PathBuf,
}

impl Replica {
    /// SIGKILL, and wait until the process is gone.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one series of its `/metrics` (0 when absent or unreachable).
    pub async fn metric(&self, series: &str) -> f64 {
        hookyard_testkit::metric(&self.url, series)
            .await
            .unwrap_or(0.0)
    }
}

/// How many calls the sink got for each `id/version`.
pub fn counts(ids: Vec<String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in ids {
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// `id/version` keys, each once.
pub fn once_each(keys: &[&str]) -> BTreeMap<String, usize> {
    keys.iter().map(|k| ((*k).to_owned(), 1)).collect()
}

/// The series of successful polls of the test source.
pub const POLLS_OK: &str = r#"hookyard_ingress_poll_polls_total{source="erp-orders",outcome="ok"}"#;
