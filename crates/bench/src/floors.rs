//! The floors ingress is compared with, in the same run: a bare hyper server answering 202
//! (HTTP ceiling), a minimal "read the body, one JetStream publish, 202" server (naive ingress),
//! and raw JetStream publishing one by one and in atomic batches (broker ceilings).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::{HeaderMap, jetstream};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::load::Outcome;

/// Which floor server to run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FloorKind {
    /// Answers 202 to everything, reading the body.
    Hyper,
    /// Reads the body, publishes it to JetStream with a unique `Nats-Msg-Id`, answers 202 after
    /// the ack (503 on failure).
    Naive,
}

/// Serves `kind` on a loopback port until killed; prints `listening <addr>` first.
pub async fn serve(
    kind: FloorKind,
    nats_url: Option<String>,
    subject: String,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let js = match (kind, nats_url) {
        (FloorKind::Naive, Some(url)) => Some(jetstream::new(async_nats::connect(url).await?)),
        (FloorKind::Naive, None) => anyhow::bail!("the naive floor needs --nats-url"),
        (FloorKind::Hyper, _) => None,
    };
    let next = Arc::new(AtomicU64::new(0));
    let subject = Arc::new(subject);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (js, next, subject) = (js.clone(), next.clone(), subject.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (js, next, subject) = (js.clone(), next.clone(), subject.clone());
                async move {
                    let body = request.into_body().collect().await.map(|b| b.to_bytes());
                    let status = match (body, js) {
                        (Err(_), _) => StatusCode::BAD_REQUEST,
                        (Ok(_), None) => StatusCode::ACCEPTED,
                        (Ok(body), Some(js)) => {
                            let id = next.fetch_add(1, Ordering::Relaxed).to_string();
                            let mut headers = HeaderMap::new();
                            headers.insert("Nats-Msg-Id", id.as_str());
                            let stored = match js
                                .publish_with_headers(subject.to_string(), headers, body)
                                .await
                            {
                                Ok(ack) => ack.await.is_ok(),
                                Err(_) => false,
                            };
                            if stored {
                                StatusCode::ACCEPTED
                            } else {
                                StatusCode::SERVICE_UNAVAILABLE
                            }
                        }
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `in_flight` concurrent JetStream publishes, each awaiting its own ack, for `duration`.
pub async fn publish_one_by_one(
    js: &jetstream::Context,
    subject: &str,
    size: usize,
    in_flight: usize,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let end = started + duration;
    let next = Arc::new(AtomicU64::new(0));
    let payload = Bytes::from(vec![b'x'; size]);
    // Ids unique across runs: the stream's duplicate window outlives a purge.
    let run = unique_token(&js.client());
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (js, subject, next, payload, run) = (
                js.clone(),
                subject.to_owned(),
                next.clone(),
                payload.clone(),
                run.clone(),
            );
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < end {
                    let sent = Instant::now();
                    let id = format!("{run}-{}", next.fetch_add(1, Ordering::Relaxed));
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Msg-Id", id.as_str());
                    let stored = match js
                        .publish_with_headers(subject.clone(), headers, payload.clone())
                        .await
                    {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    };
                    count(&mut outcome, stored, 1, sent);
                }
                outcome
            })
        })
        .collect();
    gather(tasks, started).await
}

/// Atomic batches keeping `in_flight` messages outstanding: two batches of `in_flight / 2`
/// (one being stored, the next on its way), for `duration`.
pub async fn publish_batched(
    client: &async_nats::Client,
    subject: &str,
    size: usize,
    in_flight: usize,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let end = started + duration;
    let (lanes, per_batch) = if in_flight < 2 {
        (1, 1)
    } else {
        (2, (in_flight / 2).min(1000))
    };
    let next = Arc::new(AtomicU64::new(0));
    let payload = Bytes::from(vec![b'x'; size]);
    let run = unique_token(client);
    let tasks: Vec<_> = (0..lanes)
        .map(|_| {
            let (client, subject, next, payload, run) = (
                client.clone(),
                subject.to_owned(),
                next.clone(),
                payload.clone(),
                run.clone(),
            );
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < end {
                    let sent = Instant::now();
                    let first = next.fetch_add(per_batch as u64, Ordering::Relaxed);
                    let stored = batch(&client, &subject, &payload, &run, first, per_batch).await;
                    count(&mut outcome, stored, per_batch, sent);
                }
                outcome
            })
        })
        .collect();
    gather(tasks, started).await
}

/// One atomic batch of `n` messages with ids `first..first+n`; true when committed.
async fn batch(
    client: &async_nats::Client,
    subject: &str,
    payload: &Bytes,
    run: &str,
    first: u64,
    n: usize,
) -> bool {
    let batch_id = unique_token(client);
    for i in 0..n {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{run}-{}", first + i as u64).as_str(),
        );
        if n > 1 {
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        }
        if i + 1 < n {
            if client
                .publish_with_headers(subject.to_owned(), headers, payload.clone())
                .await
                .is_err()
            {
                return false;
            }
        } else {
            if n > 1 {
                headers.insert("Nats-Batch-Commit", "1");
            }
            return match client
                .request_with_headers(subject.to_owned(), headers, payload.clone())
                .await
            {
                Ok(reply) => !reply.payload.windows(7).any(|w| w == b"\"error\""),
                Err(_) => false,
            };
        }
    }
    false
}

/// A token unique to this call (the nuid at the end of a fresh inbox).
fn unique_token(client: &async_nats::Client) -> String {
    let inbox = client.new_inbox();
    inbox.rsplit('.').next().unwrap_or("b").to_owned()
}

fn count(outcome: &mut Outcome, stored: bool, messages: usize, sent: Instant) {
    let micros = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
    if stored {
        outcome.ok += messages as u64;
        outcome
            .latencies_us
            .extend(std::iter::repeat_n(micros, messages));
    } else {
        outcome.errors += messages as u64;
    }
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Outcome>>, started: Instant) -> Outcome {
    let mut all = Outcome::default();
    for task in tasks {
        if let Ok(outcome) = task.await {
            all.ok += outcome.ok;
            all.errors += outcome.errors;
            all.latencies_us.extend(outcome.latencies_us);
        }
    }
    all.seconds = started.elapsed().as_secs_f64();
    all
}
