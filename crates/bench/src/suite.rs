//! One run of the suite for one durability mode: NATS, the two ingress processes and the floor
//! servers started once, then every measurement repeated, systems interleaved (A B A B).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, stream};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::Instant,
};

use crate::{
    floors,
    load::{self, Bodies, Outcome},
    overload,
    procs::{Mode, Nats, Proc, free_port},
    report::{Record, System},
};

/// What the suite measures, from the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    pub repetitions: usize,
    pub seconds: f64,
    pub concurrency: Vec<usize>,
    pub bodies: Vec<usize>,
    pub rates: Vec<f64>,
    pub overload_seconds: f64,
}

pub const PATH: &str = "/hooks/bench";
const NAIVE_SUBJECT: &str = "bench.naive.x";
const RAW_SUBJECT: &str = "bench.raw.x";

/// Idle and peak memory of each service process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub mode: Mode,
    pub service: String,
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
}

pub struct ModeResults {
    pub records: Vec<Record>,
    pub overload: Option<overload::Overload>,
    pub memory: Vec<Memory>,
}

/// A running `hookyard-ingress`.
pub struct Ingress {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub namespace: String,
}

/// A binary next to the bench's own (the workspace's target directory).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it first (cargo build -p {name})",
            path.display()
        );
    }
    Ok(path)
}

async fn start_ingress(
    dir: &Path,
    nats: &Nats,
    namespace: &str,
    batch_max: u16,
    env: &[(&str, String)],
) -> anyhow::Result<Ingress> {
    let config = dir.join("integration.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.bench]\npath = \"{PATH}\"\nmethods = [\"POST\"]\nmax_body_bytes = 131072\n"
        ),
    )?;
    let batch = [("HOOKYARD_INGRESS_BATCH_MAX", batch_max.to_string())];
    start_ingress_with(dir, &config, &nats.url, namespace, &[&batch, env].concat()).await
}

/// Starts `hookyard-ingress` for the integration file `config` on a free port, with `env`
/// added, and waits until it is ready (`/readyz`, at most 30 s).
pub async fn start_ingress_with(
    dir: &Path,
    config: &Path,
    nats_url: &str,
    namespace: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Ingress> {
    let port = free_port()?;
    let mut proc = Proc::spawn(
        &format!("ingress-{namespace}"),
        dir,
        Command::new(sibling("hookyard-ingress")?)
            .env("HOOKYARD_CONFIG", config)
            .env("HOOKYARD_NATS_URL", nats_url)
            .env("HOOKYARD_NAMESPACE", namespace)
            .env("HOOKYARD_INGRESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    )?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_status(addr, "/readyz").await != Some(200) {
        if let Some(status) = proc.exited() {
            bail!(
                "ingress {namespace} exited ({status}); see {}",
                dir.display()
            );
        }
        if Instant::now() > deadline {
            bail!("ingress {namespace} not ready; see {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Ingress {
        proc,
        addr,
        namespace: namespace.to_owned(),
    })
}

async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn ensure_stream(js: &jetstream::Context, name: &str, subject: &str) -> anyhow::Result<()> {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .with_context(|| format!("failed to create stream {name}"))?;
    Ok(())
}

pub async fn purge(js: &jetstream::Context, stream: &str) {
    if let Ok(stream) = js.get_stream(stream).await {
        let _ = stream.purge().await;
    }
}

pub async fn stored(js: &jetstream::Context, stream: &str) -> Option<u64> {
    let mut stream = js.get_stream(stream).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

pub fn in_stream(namespace: &str) -> String {
    format!("{}_HOOKYARD_IN", namespace.to_uppercase())
}

pub fn dedup_stream(namespace: &str) -> String {
    format!("KV_{}_HOOKYARD_DEDUP", namespace.to_uppercase())
}

fn self_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let rest = stat[stat.rfind(')')? + 2..].to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Everything measured in one mode: NATS, the two ingress setups and the two floor servers.
struct Systems {
    nats: Nats,
    client: async_nats::Client,
    js: jetstream::Context,
    batched: Ingress,
    unbatched: Ingress,
    /// Group commit with every request traced, exporting to `sink`.
    traced: Ingress,
    hyper: (Proc, SocketAddr),
    naive: (Proc, SocketAddr),
    /// Takes the traced ingress's OTLP exports (answers 202, reading the body).
    _sink: (Proc, SocketAddr),
}

impl Systems {
    async fn start(mode: Mode, nats_binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        let nats = Nats::start(nats_binary, dir, mode).await?;
        let client = async_nats::connect(&nats.url).await?;
        let js = jetstream::new(client.clone());
        ensure_stream(&js, "BENCH_NAIVE", "bench.naive.>").await?;
        ensure_stream(&js, "BENCH_RAW", "bench.raw.>").await?;
        let batched = start_ingress(dir, &nats, "bb", 100, &[]).await?;
        let unbatched = start_ingress(dir, &nats, "bu", 1, &[]).await?;
        let me = std::env::current_exe()?;
        let floor = |kind: &str| {
            let mut cmd = Command::new(&me);
            cmd.args(["floor-server", "--kind", kind, "--subject", NAIVE_SUBJECT]);
            cmd
        };
        let sink = Proc::spawn_listening("otlp-sink", &mut floor("hyper"))?;
        let tracing = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.1)),
            ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
        ];
        let traced = start_ingress(dir, &nats, "bt", 100, &tracing).await?;
        let hyper = Proc::spawn_listening("floor-hyper", &mut floor("hyper"))?;
        let naive = Proc::spawn_listening(
            "floor-naive",
            floor("naive").arg("--nats-url").arg(&nats.url),
        )?;
        Ok(Self {
            nats,
            client,
            js,
            batched,
            unbatched,
            traced,
            hyper,
            naive,
            _sink: sink,
        })
    }

    /// The servers whose memory is reported.
    fn servers(&self) -> [&Proc; 5] {
        [
            &self.batched.proc,
            &self.unbatched.proc,
            &self.traced.proc,
            &self.hyper.0,
            &self.naive.0,
        ]
    }

    /// The server answering `system` (none for JetStream floors), its address, and the streams
    /// its events land in (purged before each run; the first is checked for losses).
    fn target(&self, system: System) -> (Option<&Proc>, Option<SocketAddr>, Vec<String>) {
        fn ingress(i: &Ingress) -> (Option<&Proc>, Option<SocketAddr>, Vec<String>) {
            (
                Some(&i.proc),
                Some(i.addr),
                vec![in_stream(&i.namespace), dedup_stream(&i.namespace)],
            )
        }
        match system {
            System::Ingress => ingress(&self.batched),
            System::IngressUnbatched => ingress(&self.unbatched),
            System::IngressTraced => ingress(&self.traced),
            System::NaivePublish => (
                Some(&self.naive.0),
                Some(self.naive.1),
                vec!["BENCH_NAIVE".into()],
            ),
            System::Http202 => (Some(&self.hyper.0), Some(self.hyper.1), vec![]),
            System::JsOneByOne | System::JsBatched => (None, None, vec!["BENCH_RAW".into()]),
        }
    }

    /// CPU seconds so far of `server` (this process for the JetStream floors) and NATS.
    fn cpu(&self, server: Option<&Proc>) -> f64 {
        server.map(Proc::cpu_seconds).unwrap_or_else(self_cpu) + self.nats.proc.cpu_seconds()
    }
}

/// One closed-loop measurement: a shape of load against one system.
struct Closed {
    mode: Mode,
    system: System,
    body: usize,
    concurrency: usize,
    repetition: usize,
}

/// Runs every measurement of `plan` in `mode`.
pub async fn run_mode(
    plan: &Plan,
    mode: Mode,
    nats_binary: &Path,
    dir: &Path,
) -> anyhow::Result<ModeResults> {
    let systems = Systems::start(mode, nats_binary, dir).await?;
    let mut memory: Vec<Memory> = systems
        .servers()
        .iter()
        .map(|p| Memory {
            mode,
            service: p.name().to_owned(),
            idle_rss_kib: p.rss_kib(),
            peak_rss_kib: 0,
        })
        .collect();
    let duration = Duration::from_secs_f64(plan.seconds);
    let mut records = Vec::new();
    for repetition in 0..plan.repetitions {
        for &body in &plan.bodies {
            for &concurrency in &plan.concurrency {
                for system in System::ALL {
                    let shape = Closed {
                        mode,
                        system,
                        body,
                        concurrency,
                        repetition,
                    };
                    records.push(closed(&systems, &shape, duration).await);
                }
            }
        }
    }
    // Fixed offered rates, as fractions of ingress's capacity at the highest concurrency.
    let top = plan.concurrency.iter().copied().max().unwrap_or(1);
    let body = plan.bodies.first().copied().unwrap_or(1024);
    let capacity = median(
        records
            .iter()
            .filter(|r| r.system == System::Ingress && r.concurrency == top && r.body_bytes == body)
            .map(|r| r.accepted_per_s),
    );
    records.extend(rates(plan, mode, &systems, capacity, body).await);
    let overload = if plan.overload_seconds > 0.0 {
        let b = &systems.batched;
        Some(overload::run(plan, mode, b.addr, &b.proc, capacity, body).await)
    } else {
        None
    };
    for (m, p) in memory.iter_mut().zip(systems.servers()) {
        m.peak_rss_kib = p.peak_rss_kib();
    }
    Ok(ModeResults {
        records,
        overload,
        memory,
    })
}

/// Runs one closed-loop measurement, with its CPU and, for ingress, what it lost.
async fn closed(systems: &Systems, shape: &Closed, duration: Duration) -> Record {
    let Closed {
        mode,
        system,
        body,
        concurrency: c,
        repetition,
    } = *shape;
    let bodies = Bodies::new(body, &format!("{mode:?}-{repetition}-{c}-{body}"));
    let (server, addr, streams) = systems.target(system);
    for s in &streams {
        purge(&systems.js, s).await;
    }
    let cpu_before = systems.cpu(server);
    let mut outcome = match (system, addr) {
        (System::JsOneByOne, _) => {
            floors::publish_one_by_one(&systems.js, RAW_SUBJECT, body, c, duration).await
        }
        (System::JsBatched, _) => {
            floors::publish_batched(&systems.client, RAW_SUBJECT, body, c, duration).await
        }
        (_, Some(addr)) => load::closed_loop(addr, PATH, &bodies, c, duration).await,
        _ => unreachable!("every HTTP system has an address"),
    };
    let cpu = systems.cpu(server) - cpu_before;
    let lost = match system {
        System::Ingress | System::IngressUnbatched | System::IngressTraced => {
            stored(&systems.js, &streams[0])
                .await
                .map(|n| outcome.ok.saturating_sub(n))
        }
        _ => None,
    };
    record(
        mode,
        system,
        "closed",
        c,
        None,
        body,
        repetition,
        &mut outcome,
        lost,
        cpu,
        server,
    )
}

/// The open-loop measurements: each ingress setup offered fixed fractions of `capacity`.
async fn rates(
    plan: &Plan,
    mode: Mode,
    systems: &Systems,
    capacity: f64,
    body: usize,
) -> Vec<Record> {
    let duration = Duration::from_secs_f64(plan.seconds);
    let mut records = Vec::new();
    for repetition in 0..plan.repetitions {
        for &fraction in &plan.rates {
            for (system, ingress) in [
                (System::Ingress, &systems.batched),
                (System::IngressUnbatched, &systems.unbatched),
            ] {
                let rate = (capacity * fraction).max(1.0);
                purge(&systems.js, &in_stream(&ingress.namespace)).await;
                purge(&systems.js, &dedup_stream(&ingress.namespace)).await;
                let bodies = Bodies::new(body, &format!("{mode:?}-rate-{repetition}-{fraction}"));
                let cpu_before = systems.cpu(Some(&ingress.proc));
                let mut outcome =
                    load::open_loop(ingress.addr, PATH, &bodies, rate, duration, 512).await;
                let cpu = systems.cpu(Some(&ingress.proc)) - cpu_before;
                let lost = stored(&systems.js, &in_stream(&ingress.namespace))
                    .await
                    .map(|n| outcome.ok.saturating_sub(n));
                records.push(record(
                    mode,
                    system,
                    "rate",
                    512,
                    Some(rate),
                    body,
                    repetition,
                    &mut outcome,
                    lost,
                    cpu,
                    Some(&ingress.proc),
                ));
            }
        }
    }
    records
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    crate::report::Spread::of(&values.collect::<Vec<_>>())
        .map(|s| s.median)
        .unwrap_or(1.0)
}

#[allow(clippy::too_many_arguments)]
fn record(
    mode: Mode,
    system: System,
    load: &str,
    concurrency: usize,
    offered_per_s: Option<f64>,
    body_bytes: usize,
    repetition: usize,
    outcome: &mut Outcome,
    lost: Option<u64>,
    cpu: f64,
    server: Option<&Proc>,
) -> Record {
    Record {
        mode,
        system,
        load: load.to_owned(),
        concurrency,
        offered_per_s,
        body_bytes,
        repetition,
        accepted_per_s: outcome.ok_per_second(),
        p50_us: outcome.percentile(50.0),
        p99_us: outcome.percentile(99.0),
        p999_us: outcome.percentile(99.9),
        accepted: outcome.ok,
        shed: outcome.shed,
        other: outcome.other,
        errors: outcome.errors,
        lost,
        cpu_s_per_1000: (outcome.ok > 0).then(|| cpu * 1000.0 / outcome.ok as f64),
        peak_rss_kib: server.map(Proc::peak_rss_kib),
    }
}
