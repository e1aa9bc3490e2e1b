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

struct Ingress {
    proc: Proc,
    addr: SocketAddr,
    namespace: String,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
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
) -> anyhow::Result<Ingress> {
    let config = dir.join("integration.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.bench]\npath = \"{PATH}\"\nmethods = [\"POST\"]\nmax_body_bytes = 131072\n"
        ),
    )?;
    let port = free_port()?;
    let proc = Proc::spawn(
        &format!("ingress-{namespace}"),
        dir,
        Command::new(sibling("hookyard-ingress")?)
            .env("HOOKYARD_CONFIG", &config)
            .env("HOOKYARD_NATS_URL", &nats.url)
            .env("HOOKYARD_NAMESPACE", namespace)
            .env("HOOKYARD_INGRESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKYARD_INGRESS_BATCH_MAX", batch_max.to_string())
            .env("RUST_LOG", "warn"),
    )?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_status(addr, "/readyz").await != Some(200) {
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

async fn purge(js: &jetstream::Context, stream: &str) {
    if let Ok(stream) = js.get_stream(stream).await {
        let _ = stream.purge().await;
    }
}

async fn stored(js: &jetstream::Context, stream: &str) -> Option<u64> {
    let mut stream = js.get_stream(stream).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

fn in_stream(namespace: &str) -> String {
    format!("{}_HOOKYARD_IN", namespace.to_uppercase())
}

fn dedup_stream(namespace: &str) -> String {
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

/// Runs every measurement of `plan` in `mode`.
pub async fn run_mode(
    plan: &Plan,
    mode: Mode,
    nats_binary: &Path,
    dir: &Path,
) -> anyhow::Result<ModeResults> {
    let nats = Nats::start(nats_binary, dir, mode).await?;
    let client = async_nats::connect(&nats.url).await?;
    let js = jetstream::new(client.clone());
    ensure_stream(&js, "BENCH_NAIVE", "bench.naive.>").await?;
    ensure_stream(&js, "BENCH_RAW", "bench.raw.>").await?;
    let batched = start_ingress(dir, &nats, "bb", 100).await?;
    let unbatched = start_ingress(dir, &nats, "bu", 1).await?;
    let me = std::env::current_exe()?;
    let (hyper, hyper_addr) = Proc::spawn_listening(
        "floor-hyper",
        Command::new(&me).args([
            "floor-server",
            "--kind",
            "hyper",
            "--subject",
            NAIVE_SUBJECT,
        ]),
    )?;
    let (naive, naive_addr) = Proc::spawn_listening(
        "floor-naive",
        Command::new(&me)
            .args([
                "floor-server",
                "--kind",
                "naive",
                "--subject",
                NAIVE_SUBJECT,
                "--nats-url",
            ])
            .arg(&nats.url),
    )?;
    let mut memory: Vec<Memory> = [&batched.proc, &unbatched.proc, &hyper, &naive]
        .iter()
        .map(|p| Memory {
            mode,
            service: p.name().to_owned(),
            idle_rss_kib: p.rss_kib(),
            peak_rss_kib: 0,
        })
        .collect();

    let mut records = Vec::new();
    let duration = Duration::from_secs_f64(plan.seconds);
    for repetition in 0..plan.repetitions {
        for &body in &plan.bodies {
            for &c in &plan.concurrency {
                for system in System::ALL {
                    let bodies = Bodies::new(body, &format!("{mode:?}-{repetition}-{c}-{body}"));
                    let (server, addr, streams): (Option<&Proc>, Option<SocketAddr>, Vec<String>) =
                        match system {
                            System::Ingress => (
                                Some(&batched.proc),
                                Some(batched.addr),
                                vec![
                                    in_stream(&batched.namespace),
                                    dedup_stream(&batched.namespace),
                                ],
                            ),
                            System::IngressUnbatched => (
                                Some(&unbatched.proc),
                                Some(unbatched.addr),
                                vec![
                                    in_stream(&unbatched.namespace),
                                    dedup_stream(&unbatched.namespace),
                                ],
                            ),
                            System::NaivePublish => {
                                (Some(&naive), Some(naive_addr), vec!["BENCH_NAIVE".into()])
                            }
                            System::Http202 => (Some(&hyper), Some(hyper_addr), vec![]),
                            System::JsOneByOne | System::JsBatched => {
                                (None, None, vec!["BENCH_RAW".into()])
                            }
                        };
                    for s in &streams {
                        purge(&js, s).await;
                    }
                    let cpu_before = server.map(Proc::cpu_seconds).unwrap_or_else(self_cpu)
                        + nats.proc.cpu_seconds();
                    let mut outcome = match (system, addr) {
                        (System::JsOneByOne, _) => {
                            floors::publish_one_by_one(&js, RAW_SUBJECT, body, c, duration).await
                        }
                        (System::JsBatched, _) => {
                            floors::publish_batched(&client, RAW_SUBJECT, body, c, duration).await
                        }
                        (_, Some(addr)) => {
                            load::closed_loop(addr, PATH, &bodies, c, duration).await
                        }
                        _ => unreachable!("every HTTP system has an address"),
                    };
                    let cpu = server.map(Proc::cpu_seconds).unwrap_or_else(self_cpu)
                        + nats.proc.cpu_seconds()
                        - cpu_before;
                    let lost = match system {
                        System::Ingress | System::IngressUnbatched => stored(&js, &streams[0])
                            .await
                            .map(|n| outcome.ok.saturating_sub(n)),
                        _ => None,
                    };
                    records.push(record(
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
                    ));
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
    for repetition in 0..plan.repetitions {
        for &fraction in &plan.rates {
            for (system, ingress) in [
                (System::Ingress, &batched),
                (System::IngressUnbatched, &unbatched),
            ] {
                let rate = (capacity * fraction).max(1.0);
                purge(&js, &in_stream(&ingress.namespace)).await;
                purge(&js, &dedup_stream(&ingress.namespace)).await;
                let bodies = Bodies::new(body, &format!("{mode:?}-rate-{repetition}-{fraction}"));
                let cpu_before = ingress.proc.cpu_seconds() + nats.proc.cpu_seconds();
                let mut outcome =
                    load::open_loop(ingress.addr, PATH, &bodies, rate, duration, 512).await;
                let cpu = ingress.proc.cpu_seconds() + nats.proc.cpu_seconds() - cpu_before;
                let lost = stored(&js, &in_stream(&ingress.namespace))
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
    let overload = if plan.overload_seconds > 0.0 {
        Some(overload::run(plan, mode, batched.addr, &batched.proc, capacity, body).await)
    } else {
        None
    };
    for (m, p) in memory
        .iter_mut()
        .zip([&batched.proc, &unbatched.proc, &hyper, &naive])
    {
        m.peak_rss_kib = p.peak_rss_kib();
    }
    Ok(ModeResults {
        records,
        overload,
        memory,
    })
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
