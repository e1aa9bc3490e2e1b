//! Long-window dedup: a sender's retry after the stream's duplicate window, or to another
//! replica, is answered 202 with the same id and stored once; without the bucket, 503.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use hookyard_core::{envelope::NATS_MSG_ID, streams::Topology};
use hookyard_testkit::{Nats, unique_namespace, wait_for};
use reqwest::header::RETRY_AFTER;

use crate::harness::{self, Ingress, PASSWORD, SHOP, USER, accepted_id};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// The in stream's duplicate window in these tests, short so it can be waited out.
const STREAM_WINDOW: Duration = Duration::from_secs(1);

async fn send_shop(ingress: &Ingress, delivery: &str) -> anyhow::Result<reqwest::Response> {
    Ok(ingress
        .http
        .post(ingress.url(SHOP))
        .basic_auth(USER, Some(PASSWORD))
        .header("X-Delivery-Id", delivery)
        .body("{\"n\":1}")
        .send()
        .await?)
}

/// Publishes a probe message with `msg_id` straight to the in stream; true when it was stored
/// (not collapsed by the stream's duplicate window).
async fn probe_stored(js: &jetstream::Context, topology: &Topology) -> anyhow::Result<bool> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NATS_MSG_ID, "window-probe");
    let ack = js
        .publish_with_headers(topology.in_subject("probe"), headers, "probe".into())
        .await?
        .await?;
    Ok(!ack.duplicate)
}

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

#[tokio::test]
async fn a_retry_after_the_stream_window_or_to_another_replica_is_stored_once() -> anyhow::Result<()>
{
    let nats = Nats::start().await?;
    let mut topology = Topology::new(&unique_namespace("ing"));
    topology.limits.duplicate_window = STREAM_WINDOW;
    let first =
        harness::spawn_with(nats.client().await?, topology.clone(), PUBLISH_TIMEOUT).await?;
    first.wait_ready(true).await?;
    let kv = first.js.get_key_value(topology.dedup_bucket()).await?;

    // (1) Twice at once: one stored message, the same id.
    let shop = accepted_id(send_shop(&first, "delivery-9").await?).await?;
    assert_eq!(
        shop,
        accepted_id(send_shop(&first, "delivery-9").await?).await?
    );
    let open = accepted_id(first.post_open(b"same body".to_vec()).await?).await?;
    assert_eq!(
        open,
        accepted_id(first.post_open(b"same body".to_vec()).await?).await?
    );
    assert_ne!(shop, open);
    assert_eq!(first.stored().await?, 2);
    assert!(probe_stored(&first.js, &topology).await?);
    // Both ids are recorded (in the background, after the 202).
    for id in [&shop, &open] {
        wait_for(Duration::from_secs(10), "event id recorded", || async {
            matches!(kv.get(id.as_str()).await, Ok(Some(_)))
        })
        .await?;
    }

    // (2) After the stream's duplicate window: waiting for elapsed time is the condition. The
    // probe shows the stream itself no longer collapses a repeated msg id.
    let started = Instant::now();
    tokio::time::sleep(STREAM_WINDOW + Duration::from_millis(500)).await;
    wait_for(
        Duration::from_secs(10),
        "stream duplicate window to pass",
        || async { probe_stored(&first.js, &topology).await.unwrap_or(false) },
    )
    .await?;
    assert!(started.elapsed() < Duration::from_secs(15));
    let probes = 2;
    assert_eq!(first.stored().await?, 2 + probes);
    assert_eq!(
        shop,
        accepted_id(send_shop(&first, "delivery-9").await?).await?
    );
    assert_eq!(
        open,
        accepted_id(first.post_open(b"same body".to_vec()).await?).await?
    );
    assert_eq!(first.stored().await?, 2 + probes);

    // (3) A second ingress on the same NATS and namespace.
    let second =
        harness::spawn_with(nats.client().await?, topology.clone(), PUBLISH_TIMEOUT).await?;
    second.wait_ready(true).await?;
    assert_ne!(first.addr, second.addr);
    assert_eq!(
        shop,
        accepted_id(send_shop(&second, "delivery-9").await?).await?
    );
    assert_eq!(
        open,
        accepted_id(second.post_open(b"same body".to_vec()).await?).await?
    );
    assert_eq!(second.stored().await?, 2 + probes);

    // A new delivery is still stored, once, whichever replica gets it.
    let fresh = accepted_id(send_shop(&second, "delivery-10").await?).await?;
    assert_eq!(
        fresh,
        accepted_id(send_shop(&first, "delivery-10").await?).await?
    );
    assert_eq!(first.stored().await?, 3 + probes);

    second.stop().await?;
    first.stop().await
}

#[tokio::test]
async fn without_the_dedup_bucket_events_get_503_never_2xx() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let client = nats.client().await?;
    let js = jetstream::new(client.clone());
    let topology = Topology::new(&unique_namespace("ing"));
    // A foreign stream owning the bucket's subjects keeps the bucket from being created.
    let blocker = stream::Config {
        name: format!("BLOCKER_{}", topology.dedup_stream()),
        subjects: vec![format!("$KV.{}.>", topology.dedup_bucket())],
        ..Default::default()
    };
    js.create_stream(blocker.clone()).await?;
    let ingress = harness::spawn_with(client, topology.clone(), PUBLISH_TIMEOUT).await?;

    // The in stream gets created, the bucket cannot be: not ready, and no event is acknowledged.
    wait_for(Duration::from_secs(30), "in stream", || async {
        js.get_stream(topology.in_stream()).await.is_ok()
    })
    .await?;
    assert_eq!(ingress.status("/readyz").await, Some(503));
    assert_unavailable(&ingress.post_open(b"early".to_vec()).await?);
    assert_eq!(ingress.stored().await?, 0);

    js.delete_stream(&blocker.name).await?;
    ingress.wait_ready(true).await?;
    accepted_id(ingress.post_open(b"late".to_vec()).await?).await?;

    // The bucket disappears while ingress runs (and is kept from coming back): the lookup
    // fails, which is a 503, not a guess.
    wait_for(
        Duration::from_secs(30),
        "bucket replaced by the blocker",
        || async {
            let _ = js.delete_key_value(topology.dedup_bucket()).await;
            js.create_stream(blocker.clone()).await.is_ok()
        },
    )
    .await?;
    assert_unavailable(&ingress.post_open(b"later".to_vec()).await?);
    assert_unavailable(&ingress.post_open(b"late".to_vec()).await?);
    ingress.wait_ready(false).await?;
    assert_eq!(ingress.stored().await?, 1);
    ingress.stop().await
}
