//! When events cannot be stored: 503 with Retry-After, never 2xx; readiness and gRPC health.

use std::{
    collections::BTreeSet,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::stream;
use hookyard_core::streams::Topology;
use hookyard_testkit::{Nats, unique_namespace, wait_for};
use reqwest::header::RETRY_AFTER;

use crate::harness::{self, Ingress, accepted_id};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

fn assert_unavailable(response: &reqwest::Response) {
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
}

async fn grpc_serving(ingress: &Ingress) -> bool {
    hookyard_core::health::probe(&format!("http://{}", ingress.addr), Duration::from_secs(2))
        .await
        .is_ok()
}

#[tokio::test]
async fn nats_down_gives_503_in_bounded_time_and_no_acknowledged_event_is_lost()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, PUBLISH_TIMEOUT).await?;
    let mut acknowledged = BTreeSet::new();
    let attempt = AtomicU32::new(0);
    let next_body = || format!("event {}", attempt.fetch_add(1, Ordering::Relaxed)).into_bytes();

    for _ in 0..3 {
        acknowledged.insert(accepted_id(ingress.post_open(next_body()).await?).await?);
    }

    nats.stop().await?;
    for _ in 0..3 {
        let started = Instant::now();
        let response = ingress.post_open(next_body()).await?;
        assert_unavailable(&response);
        assert!(
            started.elapsed() < PUBLISH_TIMEOUT + Duration::from_secs(2),
            "503 took {:?}",
            started.elapsed()
        );
    }
    ingress.wait_ready(false).await?;

    nats.restart().await?;
    // Each attempt is a new event; until one is acknowledged, every answer must be a 503.
    let first_after_restart = Mutex::new(None);
    wait_for(
        Duration::from_secs(60),
        "ingress to accept again",
        || async {
            let Ok(response) = ingress.post_open(next_body()).await else {
                return false;
            };
            if response.status().as_u16() != 202 {
                assert_unavailable(&response);
                return false;
            }
            let id = accepted_id(response).await.ok();
            *first_after_restart.lock().expect("not poisoned") = id;
            true
        },
    )
    .await?;
    let first = first_after_restart.into_inner().expect("not poisoned");
    acknowledged.insert(first.expect("the 202 had an id"));
    for _ in 0..3 {
        acknowledged.insert(accepted_id(ingress.post_open(next_body()).await?).await?);
    }

    // Every 202 is in the stream. A request answered 503 may still have been stored (its
    // publish was buffered or its ack lost); that is a duplicate the sender's retry collapses
    // onto, not a loss, so the stream may hold more than the acknowledged events.
    let stored: BTreeSet<String> = ingress
        .messages()
        .await?
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert_eq!(ingress.stored().await?, stored.len() as u64);
    ingress.stop().await
}

#[tokio::test]
async fn a_full_stream_gives_503_with_retry_after_never_2xx() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let mut topology = Topology::new(&unique_namespace("ing"));
    topology.limits.in_max_bytes = 4096;
    let ingress = harness::spawn_with(nats.client().await?, topology, PUBLISH_TIMEOUT).await?;
    ingress.wait_ready(true).await?;

    let mut accepted = 0u64;
    let mut refused = None;
    for n in 0..20u32 {
        let mut body = vec![b'f'; 900];
        body.extend_from_slice(n.to_string().as_bytes());
        let response = ingress.post_open(body).await?;
        if response.status().as_u16() == 202 {
            accepted += 1;
        } else {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the stream filled up within 20 events");
    assert_unavailable(&refused);
    assert!(accepted > 0);
    // Still refused: a full stream keeps what it has (discard: new) and keeps saying 503.
    assert_unavailable(&ingress.post_open(vec![b'g'; 900]).await?);
    assert_eq!(ingress.stored().await?, accepted);
    ingress.stop().await
}

#[tokio::test]
async fn readiness_and_grpc_health_follow_nats() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let client = nats.client().await?;
    nats.stop().await?;
    let ingress = harness::spawn_with(
        client,
        Topology::new(&unique_namespace("ing")),
        PUBLISH_TIMEOUT,
    )
    .await?;

    // Started without NATS: alive, not ready, not serving, and refusing with 503.
    assert_eq!(ingress.status("/healthz").await, Some(200));
    assert_eq!(ingress.status("/readyz").await, Some(503));
    assert!(!grpc_serving(&ingress).await);
    assert_unavailable(&ingress.post_open(b"early".to_vec()).await?);

    nats.restart().await?;
    ingress.wait_ready(true).await?;
    wait_for(Duration::from_secs(30), "grpc health serving", || {
        grpc_serving(&ingress)
    })
    .await?;
    accepted_id(ingress.post_open(b"late".to_vec()).await?).await?;

    nats.stop().await?;
    ingress.wait_ready(false).await?;
    wait_for(
        Duration::from_secs(30),
        "grpc health not serving",
        || async { !grpc_serving(&ingress).await },
    )
    .await?;
    assert_eq!(ingress.status("/healthz").await, Some(200));
    ingress.stop().await
}

#[tokio::test]
async fn readyz_waits_for_the_stream_which_ingress_creates_once_it_can() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let client = nats.client().await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::new(&unique_namespace("ing"));
    // A foreign stream owning the in subjects makes creating HOOKYARD_IN fail while NATS is up.
    let blocker = format!("BLOCKER_{}", topology.in_stream());
    js.create_stream(stream::Config {
        name: blocker.clone(),
        subjects: topology.in_config().subjects,
        ..Default::default()
    })
    .await?;
    let ingress = harness::spawn_with(client, topology, PUBLISH_TIMEOUT).await?;

    assert_eq!(ingress.status("/readyz").await, Some(503));
    assert!(!grpc_serving(&ingress).await);
    assert_eq!(ingress.status("/healthz").await, Some(200));

    js.delete_stream(&blocker).await?;
    ingress.wait_ready(true).await?;
    wait_for(Duration::from_secs(30), "grpc health serving", || {
        grpc_serving(&ingress)
    })
    .await?;
    ingress.stop().await
}
