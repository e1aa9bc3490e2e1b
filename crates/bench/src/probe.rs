//! `fast-batch-probe`: does JetStream batch publishing group fsyncs under
//! `sync_interval: always`? Publishes the same messages three ways, each against a fresh
//! nats-server: one by one (pipelined, `in_flight` outstanding), atomic batches
//! (`Nats-Batch-*` headers, ADR-50 atomic) and fast-ingest batches (ADR-50 fast batch, stream
//! `allow_batched`, batch metadata in the reply subject `<prefix>.<flow>.fail.<seq>.<op>.$FI`),
//! and reports messages/s and, with `--strace`, the server's fsync/fdatasync calls per message.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::procs::{Mode, Nats};

const STREAM: &str = "PROBE";
const SUBJECT: &str = "probe.x";

/// How the messages are published.
#[derive(Debug, Clone, Copy)]
enum Way {
    OneByOne,
    Atomic,
    Fast,
}

/// What the probe measures.
pub struct Plan {
    pub messages: usize,
    pub size: usize,
    pub batch: usize,
    pub in_flight: usize,
    pub strace: bool,
}

/// Runs the three ways in turn and prints one line each.
pub async fn run(plan: &Plan, binary: &Path, dir: &Path) -> anyhow::Result<()> {
    for way in [Way::OneByOne, Way::Atomic, Way::Fast] {
        let nats = Nats::start(binary, dir, Mode::SyncAlways).await?;
        let client = async_nats::connect(nats.url.as_str()).await?;
        create_stream(&client).await?;
        let trace = if plan.strace {
            Some(Strace::attach(nats.proc.pid(), &dir.join(format!("{way:?}.strace"))).await?)
        } else {
            None
        };
        let started = Instant::now();
        let stored = match way {
            Way::OneByOne => one_by_one(&client, plan).await,
            Way::Atomic | Way::Fast => batches(&client, plan, way).await,
        };
        let seconds = started.elapsed().as_secs_f64();
        let fsyncs = trace.map(Strace::finish).transpose()?;
        let in_stream = stream_messages(&client).await?;
        println!(
            "{way:?}: {stored} acknowledged, {in_stream} in the stream, {:.0} msgs/s, batch {}, in flight {}{}",
            stored as f64 / seconds,
            plan.batch,
            plan.in_flight,
            fsyncs
                .map(|f| format!(
                    ", {f} fsync+fdatasync ({:.2} per message)",
                    f as f64 / plan.messages as f64
                ))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Creates the stream with a raw API request (async-nats gates `allow_batched` behind a feature).
async fn create_stream(client: &async_nats::Client) -> anyhow::Result<()> {
    let config = serde_json::json!({
        "name": STREAM,
        "subjects": ["probe.>"],
        "storage": "file",
        "discard": "new",
        "duplicate_window": 120_000_000_000u64,
        "allow_atomic": true,
        "allow_batched": true,
    });
    let reply = client
        .request(
            format!("$JS.API.STREAM.CREATE.{STREAM}"),
            serde_json::to_vec(&config)?.into(),
        )
        .await?;
    if reply.payload.windows(7).any(|w| w == b"\"error\"") {
        bail!("stream create: {}", String::from_utf8_lossy(&reply.payload));
    }
    Ok(())
}

async fn stream_messages(client: &async_nats::Client) -> anyhow::Result<u64> {
    let reply = client
        .request(format!("$JS.API.STREAM.INFO.{STREAM}"), Bytes::new())
        .await?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    info["state"]["messages"]
        .as_u64()
        .context("no state.messages in stream info")
}

fn headers(id: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("m{id}").as_str());
    headers
}

/// `in_flight` tasks, each publishing and awaiting its ack, until `messages` are sent.
async fn one_by_one(client: &async_nats::Client, plan: &Plan) -> usize {
    let js = async_nats::jetstream::new(client.clone());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let payload = Bytes::from(vec![b'x'; plan.size]);
    let messages = plan.messages;
    let tasks: Vec<_> = (0..plan.in_flight)
        .map(|_| {
            let (js, next, payload) = (js.clone(), next.clone(), payload.clone());
            tokio::spawn(async move {
                let mut stored = 0;
                loop {
                    let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if id >= messages {
                        return stored;
                    }
                    if let Ok(ack) = js
                        .publish_with_headers(SUBJECT, headers(id), payload.clone())
                        .await
                        && ack.await.is_ok()
                    {
                        stored += 1;
                    }
                }
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += task.await.unwrap_or(0);
    }
    stored
}

/// `in_flight / batch` lanes, each sending whole batches one after the other.
async fn batches(client: &async_nats::Client, plan: &Plan, way: Way) -> usize {
    let lanes = (plan.in_flight / plan.batch).max(1);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let payload = Bytes::from(vec![b'x'; plan.size]);
    let (messages, batch) = (plan.messages, plan.batch.max(2));
    let tasks: Vec<_> = (0..lanes)
        .map(|lane| {
            let (client, next, payload) = (client.clone(), next.clone(), payload.clone());
            tokio::spawn(async move {
                let mut stored = 0;
                let mut number = 0;
                loop {
                    let first = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                    if first >= messages {
                        return stored;
                    }
                    let n = batch.min(messages - first);
                    number += 1;
                    let ok = match way {
                        Way::Atomic => atomic(&client, &payload, first, n).await,
                        _ => fast(&client, &payload, first, n, lane, number).await,
                    };
                    match ok {
                        Ok(()) => stored += n,
                        Err(error) => eprintln!("{way:?} batch at {first}: {error:#}"),
                    }
                }
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += task.await.unwrap_or(0);
    }
    stored
}

async fn atomic(
    client: &async_nats::Client,
    payload: &Bytes,
    first: usize,
    n: usize,
) -> anyhow::Result<()> {
    let id = format!("b{first}");
    for i in 0..n {
        let mut headers = headers(first + i);
        headers.insert("Nats-Batch-Id", id.as_str());
        headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        if i + 1 < n {
            client
                .publish_with_headers(SUBJECT, headers, payload.clone())
                .await?;
        } else {
            headers.insert("Nats-Batch-Commit", "1");
            let reply = client
                .request_with_headers(SUBJECT, headers, payload.clone())
                .await?;
            if reply.payload.windows(7).any(|w| w == b"\"error\"") {
                bail!("{}", String::from_utf8_lossy(&reply.payload));
            }
        }
    }
    Ok(())
}

/// One fast batch: op 0 starts, 1 appends, 2 appends and commits. Flow control as ADR-50
/// asks (the reply subject's flow stays `n`, as orbit.go's publisher does): wait for the
/// start's flow ack, then keep at most two windows of the server's current `msgs`
/// unacknowledged; the batch counts as stored when the commit's batch ack arrives.
async fn fast(
    client: &async_nats::Client,
    payload: &Bytes,
    first: usize,
    n: usize,
    lane: usize,
    number: usize,
) -> anyhow::Result<()> {
    let prefix = format!("{}.l{lane}b{number}", client.new_inbox());
    let mut acks = client.subscribe(format!("{prefix}.>")).await?;
    let (mut acked, mut flow) = (0usize, n);
    for i in 1..=n {
        let op = match i {
            1 => 0,
            i if i == n => 2,
            _ => 1,
        };
        while i > 1 && (acked == 0 || i > acked + 2 * flow) {
            match answer(&mut acks, lane, number).await? {
                Answer::Flow { seq, msgs } => {
                    acked = acked.max(seq.max(1));
                    flow = msgs.max(1);
                }
                Answer::Committed => bail!("committed before the last message"),
            }
        }
        let reply = format!("{prefix}.{n}.fail.{i}.{op}.$FI");
        client
            .publish_with_reply_and_headers(SUBJECT, reply, headers(first + i - 1), payload.clone())
            .await?;
    }
    loop {
        if let Answer::Committed = answer(&mut acks, lane, number).await? {
            return Ok(());
        }
    }
}

enum Answer {
    Flow { seq: usize, msgs: usize },
    Committed,
}

/// The server's next answer on a fast batch's reply prefix; errors and gaps fail the batch.
async fn answer(
    acks: &mut async_nats::Subscriber,
    lane: usize,
    number: usize,
) -> anyhow::Result<Answer> {
    let ack = tokio::time::timeout(Duration::from_secs(10), acks.next())
        .await
        .context("no answer from the server within 10 s")?
        .context("ack subscription closed")?;
    let text = String::from_utf8_lossy(&ack.payload);
    if lane == 0 && number == 1 {
        eprintln!("first fast batch, server answer: {text}");
    }
    let value: serde_json::Value = serde_json::from_slice(&ack.payload)?;
    match value["type"].as_str() {
        Some("ack") => Ok(Answer::Flow {
            seq: value["seq"].as_u64().unwrap_or(0) as usize,
            msgs: value["msgs"].as_u64().unwrap_or(1) as usize,
        }),
        // A plain pub ack (no `batch`) would mean the server ignored the fast-batch reply.
        None if value["batch"].is_string() && value["error"].is_null() => Ok(Answer::Committed),
        _ => bail!("{text}"),
    }
}

/// `strace -c` attached to nats-server, counting fsync and fdatasync calls.
struct Strace {
    child: std::process::Child,
    out: std::path::PathBuf,
    running: bool,
}

impl Drop for Strace {
    /// A probe that failed half-way leaves no strace behind.
    fn drop(&mut self) {
        if self.running {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Strace {
    async fn attach(pid: u32, out: &Path) -> anyhow::Result<Self> {
        let child = Command::new("strace")
            .args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(out)
            .args(["-p", &pid.to_string()])
            .spawn()
            .context("strace not found")?;
        // strace attaches within a few milliseconds; give it time before the load starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Self {
            child,
            out: out.to_owned(),
            running: true,
        })
    }

    /// Detaches (SIGINT makes strace write its summary) and returns the call count.
    fn finish(mut self) -> anyhow::Result<u64> {
        self.running = false;
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        let summary = std::fs::read_to_string(&self.out)?;
        Ok(summary
            .lines()
            .filter(|l| l.ends_with("fsync") || l.ends_with("fdatasync"))
            .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
            .sum())
    }
}
