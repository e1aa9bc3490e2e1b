//! Long-window dedup: a sender's retry after the stream's duplicate window, or to another
//! replica, is answered 202 with the same id and stored once; without the bucket, 503. A
//! source's `dedup_window` decides how old a record may be and still absorb a repeat; a
//! source keyed by the body hash has none unless it asks for one.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use hookyard_core::{
    Integration,
    envelope::{self, NATS_MSG_ID, now_ms},
    streams::Topology,
};
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

/// The harness's sources, the open one (keyed by the body hash) opted in to a window.
fn open_opted_in(window: Duration) -> Integration {
    let mut integration = harness::integration();
    if let Some(open) = integration.sources.get_mut("open") {
        open.dedup_window = Some(window);
    }
    integration
}

#[tokio::test]
async fn a_retry_after_the_stream_window_or_to_another_replica_is_stored_once() -> anyhow::Result<()>
{
    let nats = Nats::start().await?;
    let mut topology = Topology::new(&unique_namespace("ing"));
    topology.limits.duplicate_window = STREAM_WINDOW;
    // The open source opts in, so a key from the body hash is covered as well as a delivery id.
    let spawn = async || {
        harness::start(
            nats.client().await?,
            topology.clone(),
            PUBLISH_TIMEOUT,
            open_opted_in(7 * DAY),
        )
        .await
    };
    let first = spawn().await?;
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
        wait_recorded(&kv, id).await?;
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
    let second = spawn().await?;
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

    // The in stream gets created, the bucket cannot be: not ready, and no event of a source
    // with a window is acknowledged.
    wait_for(Duration::from_secs(30), "in stream", || async {
        js.get_stream(topology.in_stream()).await.is_ok()
    })
    .await?;
    assert_eq!(ingress.status("/readyz").await, Some(503));
    assert_unavailable(&send_shop(&ingress, "early").await?);
    assert_eq!(ingress.stored().await?, 0);
    // A source whose window is off never asks the bucket, so it does not need one.
    accepted_id(ingress.post_open(b"early".to_vec()).await?).await?;
    assert_eq!(ingress.stored().await?, 1);

    js.delete_stream(&blocker.name).await?;
    ingress.wait_ready(true).await?;
    accepted_id(send_shop(&ingress, "late").await?).await?;

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
    assert_unavailable(&send_shop(&ingress, "later").await?);
    assert_unavailable(&send_shop(&ingress, "late").await?);
    ingress.wait_ready(false).await?;
    assert_eq!(ingress.stored().await?, 2);
    ingress.stop().await
}

/// The event id the shop source gives the delivery id `delivery`.
fn shop_id(delivery: &str) -> String {
    envelope::event_id("shop", delivery)
}

/// The event id the open source (keyed by the body hash) gives `body`.
fn open_id(body: &[u8]) -> String {
    envelope::event_id("open", &envelope::body_dedup_key(body))
}

/// Records `event_id` in the dedup bucket as ingress does, as if accepted `ago` before now.
async fn seed(kv: &kv::Store, event_id: &str, ago: Duration) -> anyhow::Result<()> {
    let received_at_ms = now_ms() - i64::try_from(ago.as_millis())?;
    kv.create(event_id, received_at_ms.to_string().into())
        .await?;
    Ok(())
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Waits until `event_id` is recorded (records are written in the background after the 202).
async fn wait_recorded(kv: &kv::Store, event_id: &str) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(10), "event id recorded", || async {
        matches!(kv.get(event_id).await, Ok(Some(_)))
    })
    .await
}

/// Records in the dedup bucket.
async fn records(ingress: &Ingress) -> anyhow::Result<u64> {
    let stream = ingress
        .js
        .get_stream(ingress.topology.dedup_stream())
        .await?;
    Ok(stream.cached_info().state.messages)
}

/// A periodic ping with the same body days apart is two events: without a sender id the event
/// id is the body hash, and absorbing it for a week would answer the second 202 and drop it.
#[tokio::test]
async fn a_body_hash_source_stores_the_same_body_days_later_and_records_nothing()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, PUBLISH_TIMEOUT).await?;
    let kv = ingress
        .js
        .get_key_value(ingress.topology.dedup_bucket())
        .await?;
    let ping = b"{\"status\":\"ok\"}";
    seed(&kv, &open_id(ping), 3 * DAY).await?;

    assert_eq!(
        accepted_id(ingress.post_open(ping.to_vec()).await?).await?,
        open_id(ping)
    );
    let stored = ingress.messages().await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.id, open_id(ping));

    let other = b"{\"status\":\"degraded\"}";
    accepted_id(ingress.post_open(other.to_vec()).await?).await?;
    // A record's write is spawned before its request is answered and goes out on ingress's one
    // NATS connection; this test's runtime has one thread, so the open event's record, had it
    // one, would reach NATS before that of the shop event sent after it.
    let shop = accepted_id(send_shop(&ingress, "delivery-1").await?).await?;
    wait_recorded(&kv, &shop).await?;
    assert_eq!(kv.get(open_id(other)).await?, None);
    // The seeded record and the shop event's: the open source wrote none.
    assert_eq!(records(&ingress).await?, 2);
    assert_eq!(ingress.stored().await?, 3);
    ingress.stop().await
}

/// The source's `dedup_window` decides how old a record may be and still absorb a repeat, and
/// the record a stale one is replaced with starts the window again.
#[tokio::test]
async fn a_record_absorbs_a_repeat_only_within_the_sources_window() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let mut integration = harness::integration();
    if let Some(shop) = integration.sources.get_mut("shop") {
        shop.dedup_window = Some(HOUR);
    }
    let ingress = harness::spawn_serving(nats.client().await?, integration).await?;
    let kv = ingress
        .js
        .get_key_value(ingress.topology.dedup_bucket())
        .await?;
    let (stale, recent) = (shop_id("delivery-stale"), shop_id("delivery-recent"));
    seed(&kv, &stale, 2 * HOUR).await?;
    seed(&kv, &recent, Duration::from_secs(10 * 60)).await?;

    let before = now_ms();
    assert_eq!(
        accepted_id(send_shop(&ingress, "delivery-stale").await?).await?,
        stale
    );
    assert_eq!(
        accepted_id(send_shop(&ingress, "delivery-recent").await?).await?,
        recent
    );
    let stored = ingress.messages().await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.id, stale);
    wait_for(Duration::from_secs(10), "stale record replaced", || async {
        let value = kv.get(stale.as_str()).await.ok().flatten();
        let at = value.and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok());
        at.is_some_and(|at| at >= before)
    })
    .await?;
    ingress.stop().await
}

/// With no `dedup_window`, a source with a sender id keeps the bucket's whole week.
#[tokio::test]
async fn a_sender_id_source_absorbs_a_repeat_days_later_by_default() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, PUBLISH_TIMEOUT).await?;
    let kv = ingress
        .js
        .get_key_value(ingress.topology.dedup_bucket())
        .await?;
    seed(&kv, &shop_id("delivery-old"), 6 * DAY).await?;
    assert_eq!(
        accepted_id(send_shop(&ingress, "delivery-old").await?).await?,
        shop_id("delivery-old")
    );
    assert_eq!(ingress.stored().await?, 0);
    ingress.stop().await
}
