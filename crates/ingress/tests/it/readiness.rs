//! Readiness tells whether `HOOKYARD_IN` accepts writes, not only whether NATS is connected:
//! with JetStream's store full, `/readyz` is 503 and webhooks are refused at once, and both
//! recover without a restart once space is freed.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use hookyard_core::streams::Topology;
use hookyard_testkit::{Nats, unique_namespace, wait_for};
use http::header::RETRY_AFTER;

use crate::harness::{self, accepted_id};

/// Long enough that an answer "at once" and one after the timeout cannot be confused.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// A server whose whole file store is 8 MiB, so a test can fill it.
fn small_store_conf() -> String {
    Nats::production_conf().replace("max_file_store: 8GB", "max_file_store: 8MB")
}

/// Fills the server's file store through a stream with no size cap of its own.
async fn fill_store(js: &jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: "FILLER".into(),
        subjects: vec!["filler".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let chunk = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
    for _ in 0..64 {
        let acked = match js.publish("filler", chunk.clone()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if !acked {
            return Ok(());
        }
    }
    anyhow::bail!("the store did not fill up")
}

#[tokio::test]
async fn a_full_store_makes_ingress_not_ready_and_refuse_at_once_until_space_is_freed()
-> anyhow::Result<()> {
    let nats = Nats::start_with_conf(&small_store_conf()).await?;
    let client = nats.client().await?;
    let js = jetstream::new(client.clone());
    let mut topology = Topology::new(&unique_namespace("ing"));
    // No reservation for the in stream: it shares the server's store with everything else,
    // which is what fills up on a real disk.
    topology.limits.in_max_bytes = -1;
    topology.limits.dedup_max_bytes = 1024 * 1024;
    let ingress = harness::spawn_with(client, topology, PUBLISH_TIMEOUT).await?;
    ingress.wait_ready(true).await?;
    accepted_id(ingress.post_open(b"before".to_vec()).await?).await?;

    fill_store(&js).await?;
    let first = ingress.post_open(b"while full".to_vec()).await?;
    assert_eq!(first.status().as_u16(), 503);
    ingress.wait_ready(false).await?;
    let started = Instant::now();
    let refused = ingress.post_open(b"still full".to_vec()).await?;
    let took = started.elapsed();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key(RETRY_AFTER));
    assert!(
        took < PUBLISH_TIMEOUT / 5,
        "refused after {took:?}, publish timeout {PUBLISH_TIMEOUT:?}"
    );

    js.get_stream("FILLER").await?.purge().await?;
    ingress.wait_ready(true).await?;
    wait_for(Duration::from_secs(30), "a webhook accepted again", || async {
        matches!(ingress.post_open(b"after".to_vec()).await, Ok(r) if r.status().as_u16() == 202)
    })
    .await?;
    ingress.stop().await
}
