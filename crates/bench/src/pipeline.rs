//! The whole of hookyard as the end-to-end runs start it: NATS (one server or a three-node
//! cluster), the real `hookyard-ingress`, `hookyard-router`, `hookyard-egress` and
//! `hookyard-worker` binaries, one handler POSTing each event's body to the bench's sink.
//! Every process is a [`Proc`], killed when the pipeline is dropped.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::bail;
use async_nats::jetstream;
use tokio::time::Instant;

use crate::{
    procs::{Mode, NatsSet, Proc, Topology, free_port},
    suite::{Ingress, PATH, in_stream, sibling, start_ingress_with},
};

/// Namespace of every stream and subject of the end-to-end runs.
pub const NAMESPACE: &str = "e2e";
/// The one handler; its steps POST the event body to the sink.
pub const HANDLER: &str = "deliver";
/// Events the worker handles at once (the handler's `concurrency`).
pub const WORKER_CONCURRENCY: usize = 64;

/// The integration file: a source, a route for every event, one handler with one `http` step,
/// and the sink as its connection (loopback, so `allow_private` lifts the SSRF guard for it).
fn integration(sink: SocketAddr) -> String {
    format!(
        r#"[sources.bench]
path = "{PATH}"
methods = ["POST"]
max_body_bytes = 131072
event_type = "bench.event"

[[routes]]
event = "*"
handlers = ["{HANDLER}"]

[handlers.{HANDLER}]
concurrency = {WORKER_CONCURRENCY}
max_deliver = 5
backoff = ["1s"]

[[handlers.{HANDLER}.steps]]
type = "http"
connection = "sink"
method = "POST"
path = "/events"

[connections.sink]
base_url = "http://{sink}"
timeout = "10s"
allow_private = ["127.0.0.0/8"]
"#
    )
}

/// A started pipeline; the worker may be absent (stopped for the backlog drain).
pub struct Pipeline {
    pub nats: NatsSet,
    pub js: jetstream::Context,
    pub ingress: Ingress,
    pub router: Option<Proc>,
    pub egress: Option<Proc>,
    pub worker: Option<Proc>,
    egress_url: String,
    config: PathBuf,
    dir: PathBuf,
    replicas: u8,
}

impl Pipeline {
    /// Starts NATS in `mode` and `topology`, and ingress (the other services come later).
    pub async fn start(
        nats_binary: &Path,
        dir: &Path,
        mode: Mode,
        topology: Topology,
        sink: SocketAddr,
    ) -> anyhow::Result<Self> {
        let dir = dir.join(format!("e2e-{}-{mode:?}", topology.label()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("integration.toml");
        std::fs::write(&config, integration(sink))?;
        let nats = NatsSet::start(nats_binary, &dir, mode, topology).await?;
        let js = jetstream::new(async_nats::connect(&nats.nodes[0].url).await?);
        let replicas = [("HOOKYARD_STREAM_REPLICAS", topology.replicas().to_string())];
        let ingress = start_ingress_with(&dir, &config, &nats.url, NAMESPACE, &replicas).await?;
        Ok(Self {
            nats,
            js,
            ingress,
            router: None,
            egress: None,
            worker: None,
            egress_url: String::new(),
            config,
            dir,
            replicas: topology.replicas(),
        })
    }

    /// Starts egress and the router, and the worker unless `worker` is false.
    pub async fn start_services(&mut self, worker: bool) -> anyhow::Result<()> {
        let (egress, port) = self.service("egress", &[]).await?;
        self.egress = Some(egress);
        self.egress_url = format!("http://127.0.0.1:{port}");
        self.router = Some(self.service("router", &[]).await?.0);
        if worker {
            self.start_worker().await?;
        }
        Ok(())
    }

    /// Starts (or starts again) the worker of [`HANDLER`].
    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        let env = [
            ("HOOKYARD_WORKER_HANDLERS", HANDLER.to_owned()),
            ("HOOKYARD_EGRESS_ENDPOINT", self.egress_url.clone()),
        ];
        self.worker = Some(self.service("worker", &env).await?.0);
        Ok(())
    }

    /// Starts `hookyard-<name>` on a free port with the common settings and `env`, and waits
    /// until its own `healthcheck` command says it is serving (at most 30 s).
    async fn service(&self, name: &str, env: &[(&str, String)]) -> anyhow::Result<(Proc, u16)> {
        let binary = sibling(&format!("hookyard-{name}"))?;
        let upper = name.to_uppercase();
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let mut proc = Proc::spawn(
            name,
            &self.dir,
            Command::new(&binary)
                .env("HOOKYARD_CONFIG", &self.config)
                .env("HOOKYARD_NATS_URL", &self.nats.url)
                .env("HOOKYARD_NAMESPACE", NAMESPACE)
                .env("HOOKYARD_STREAM_REPLICAS", self.replicas.to_string())
                .env(format!("HOOKYARD_{upper}_LISTEN"), &listen)
                .env(format!("HOOKYARD_{upper}_RELOAD_INTERVAL"), "0s")
                .env("RUST_LOG", "warn")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy(&binary, &upper, &listen).await {
            if let Some(status) = proc.exited() {
                bail!("{name} exited ({status}); see {}", self.dir.display());
            }
            if Instant::now() > deadline {
                bail!("{name} not serving after 30 s; see {}", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((proc, port))
    }

    /// The processes of the pipeline, NATS nodes included, for CPU and memory.
    pub fn procs(&self) -> Vec<&Proc> {
        let services = [&self.router, &self.egress, &self.worker];
        std::iter::once(&self.ingress.proc)
            .chain(services.into_iter().flatten())
            .chain(self.nats.nodes.iter().map(|n| &n.proc))
            .collect()
    }

    /// CPU seconds so far of every process of the pipeline.
    pub fn cpu_seconds(&self) -> f64 {
        self.procs().iter().map(|p| p.cpu_seconds()).sum()
    }

    /// Events not yet delivered: what the router has still to route, plus the work items not
    /// done (a work item is done when the worker acknowledges it, after the partner's answer).
    /// `None` while the router's or the handler's consumer does not exist.
    pub async fn backlog(&self) -> Option<u64> {
        Some(self.unrouted().await? + self.work_items().await?)
    }

    /// Events in `HOOKYARD_IN` the router has not finished with.
    pub async fn unrouted(&self) -> Option<u64> {
        let stream = self.js.get_stream(in_stream(NAMESPACE)).await.ok()?;
        let info = stream.consumer_info("router").await.ok()?;
        Some(info.num_pending + info.num_ack_pending as u64)
    }

    /// Work items the handler has not finished, waiting ones (`HOOKYARD_WAIT`) included. Done
    /// items stay in `HOOKYARD_WORK` until the worker purges them, so its consumer says what
    /// is left.
    pub async fn work_items(&self) -> Option<u64> {
        let stream = self
            .js
            .get_stream(stream_name("HOOKYARD_WORK"))
            .await
            .ok()?;
        let consumer = format!("handler-{HANDLER}");
        let info = stream.consumer_info(consumer).await.ok()?;
        let work = info.num_pending + info.num_ack_pending as u64;
        let wait = stream_messages(&self.js, &stream_name("HOOKYARD_WAIT"))
            .await
            .unwrap_or(0);
        Some(work + wait)
    }

    /// Purges the events ingress stored (and its dedup records), before the router runs.
    pub async fn purge_in(&self) {
        crate::suite::purge(&self.js, &in_stream(NAMESPACE)).await;
        crate::suite::purge(&self.js, &crate::suite::dedup_stream(NAMESPACE)).await;
    }

    /// The ids in the event bodies of every dead letter (`HOOKYARD_DLQ`): a dead letter holds
    /// its event's envelope, whose body bytes are the JSON the bench sent.
    pub async fn dead_ids(&self) -> Vec<String> {
        let Ok(mut stream) = self.js.get_stream(stream_name("HOOKYARD_DLQ")).await else {
            return Vec::new();
        };
        let Ok(info) = stream.info().await else {
            return Vec::new();
        };
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut ids = Vec::new();
        for sequence in first..=last.min(first + 1_000_000) {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                ids.extend(ids_in(&message.payload));
            }
        }
        ids
    }
}

/// Whether `hookyard-<service> healthcheck` finds the service at `listen` serving.
async fn healthy(binary: &Path, upper: &str, listen: &str) -> bool {
    tokio::process::Command::new(binary)
        .arg("healthcheck")
        .env(
            format!("HOOKYARD_{upper}_HEALTH_ENDPOINT"),
            format!("http://{listen}"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn stream_name(base: &str) -> String {
    format!("{}_{base}", NAMESPACE.to_uppercase())
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> Option<u64> {
    let mut stream = js.get_stream(name).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// Every bench body id (`{"id":"…"`) inside `bytes`.
fn ids_in(bytes: &[u8]) -> Vec<String> {
    const HEAD: &[u8] = b"{\"id\":\"";
    let mut ids = Vec::new();
    let mut at = 0;
    while let Some(start) = bytes[at..].windows(HEAD.len()).position(|w| w == HEAD) {
        let from = at + start;
        if let Some(id) = crate::load::body_id(&bytes[from..]) {
            ids.push(id.to_owned());
        }
        at = from + HEAD.len();
    }
    ids
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_found_in_a_dead_letter_payload() {
        let payload = b"\x0a\x10evt_1\x12{\"id\":\"run-7\",\"pad\":\"xx\"}\x1a{\"id\":\"run-8\"}";
        assert_eq!(super::ids_in(payload), vec!["run-7", "run-8"]);
    }
}
