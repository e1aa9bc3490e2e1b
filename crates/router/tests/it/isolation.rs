//! One handler cannot stall the others, and one event cannot keep the router busy forever:
//! a handler at its cap in the work queue gets its new items parked and moved back as its
//! workers drain, while the router acknowledges everything; an event whose work items can never
//! be stored is dead-lettered after the router's `max_deliver`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{self, pull};
use futures::StreamExt as _;
use hookyard_proto::event::v1::{DeadLetter, WorkItem};
use hookyard_testkit::{Nats, metric, stored, wait_for};
use prost::Message as _;

use super::{LIMIT, Options, Router, event, small_topology, wait_stored};

const SPLIT: &str = r#"
[sources.shop]
path = "/hooks/shop"
event_type = { header = "X-Topic" }

[[routes]]
event = "order.*"
handlers = ["orders"]

[[routes]]
event = "ship.*"
handlers = ["shipments"]

[handlers.orders]
steps = [{ type = "http", connection = "erp", path = "/orders" }]

[handlers.shipments]
steps = [{ type = "http", connection = "erp", path = "/shipments" }]

[connections.erp]
base_url = "https://erp.example.com"
"#;

const CAP: i64 = 5;

#[tokio::test]
async fn a_handler_at_its_cap_waits_alone_and_gets_all_its_work_once_drained() -> anyhow::Result<()>
{
    let nats = Nats::start().await?;
    let mut topology = small_topology("cap");
    topology.limits.work_max_per_handler = CAP;
    let router = Router::start_opts(
        &nats,
        Options {
            config: SPLIT,
            topology,
            ..Options::default()
        },
    )
    .await?;
    // The orders worker runs; the shipments worker is absent, so its items pile up. Interleaved,
    // so most orders come after shipments reached its cap.
    let publish = async {
        for i in 0..20 {
            router
                .publish_event(&event(&format!("evt_s{i}"), Some("ship.created")))
                .await?;
            router
                .publish_event(&event(&format!("evt_o{i}"), Some("order.created")))
                .await?;
        }
        anyhow::Ok(())
    };
    let (published, orders) = tokio::join!(publish, drain(&router, "orders", 20));
    published?;
    let orders = orders?;
    assert!(orders.values().all(|n| *n == 1), "no copies: {orders:?}");
    // The router holds nothing back: every event is acknowledged.
    router.wait_all_acked(40).await?;
    let t = &router.topology;
    let by_subject = subjects(&router, &t.work_stream()).await?;
    assert_eq!(
        by_subject.get(&t.work_subject("shipments")),
        Some(&(CAP as usize)),
        "{by_subject:?}"
    );
    let waiting = subjects(&router, &t.wait_stream()).await?;
    assert_eq!(waiting.get(&t.wait_subject("shipments")), Some(&15));
    let gauge = r#"hookyard_router_waiting{handler="shipments"}"#;
    wait_for(
        LIMIT,
        "the waiting gauge to show the parked items",
        || async { metric(&router.endpoint, gauge).await.ok() == Some(15.0) },
    )
    .await?;

    // The shipments worker comes: it receives all 20, once each, as room appears.
    let seen = drain(&router, "shipments", 20).await?;
    assert_eq!(seen.len(), 20, "every shipment once: {seen:?}");
    assert!(seen.values().all(|n| *n == 1), "no copies: {seen:?}");
    wait_for(LIMIT, "the wait stream to be empty", || async {
        stored(&router.js, &t.wait_stream())
            .await
            .is_ok_and(|m| m.is_empty())
    })
    .await?;
    wait_for(LIMIT, "the waiting gauge to fall to 0", || async {
        metric(&router.endpoint, gauge).await.ok() == Some(0.0)
    })
    .await?;
    router.stop().await
}

/// Messages in `stream` by subject.
async fn subjects(router: &Router, stream: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for m in stored(&router.js, stream).await? {
        *out.entry(m.subject.to_string()).or_insert(0) += 1;
    }
    Ok(out)
}

/// Acts as `handler`'s worker: takes and acknowledges its work items, purging what is done as
/// workers do, until `n` distinct events came; returns how many times each event came.
async fn drain(
    router: &Router,
    handler: &str,
    n: usize,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let t = &router.topology;
    let worker: consumer::PullConsumer = router
        .js
        .create_consumer_on_stream(
            pull::Config {
                durable_name: Some(t.handler_consumer(handler)),
                filter_subject: t.work_subject(handler),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
            t.work_stream(),
        )
        .await?;
    let work = router.js.get_stream(t.work_stream()).await?;
    let mut purged_below = 0;
    let mut seen = BTreeMap::new();
    let mut messages = worker.messages().await?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while seen.len() < n {
        let next = tokio::time::timeout_at(deadline, messages.next())
            .await
            .with_context(|| format!("only {} of {n} work items came", seen.len()))?
            .context("the pull ended")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let item = WorkItem::decode(next.payload.as_ref())?;
        let id = item.event.map(|e| e.id).unwrap_or_default();
        *seen.entry(id).or_insert(0) += 1;
        next.double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        purged_below = t
            .purge_done_work(&work, handler, purged_below)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(seen)
}

#[tokio::test]
async fn an_event_the_router_can_never_store_is_dead_lettered_after_max_deliver_and_others_flow()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let router = Router::start_opts(
        &nats,
        Options {
            max_deliver: 3,
            ..Options::default()
        },
    )
    .await?;
    // An event that just fits the server's max_payload: its work items, a few bytes larger,
    // never will.
    let client = nats.client().await?;
    wait_for(LIMIT, "the server's INFO", || async {
        client.server_info().max_payload > 0
    })
    .await?;
    let max_payload = client.server_info().max_payload;
    let mut poison = event("evt_poison", Some("order.created"));
    let overhead = poison.encoded_len() + 16;
    poison.body = vec![b'x'; max_payload - overhead - 40];
    router.publish_event(&poison).await?;
    for i in 0..10 {
        router
            .publish_event(&event(&format!("evt_ok{i}"), Some("order.created")))
            .await?;
    }
    // The others are routed (two handlers each) while the poison is retried.
    wait_stored(&router.js, &router.topology.work_stream(), 20).await?;
    let dead = wait_stored(&router.js, &router.topology.dlq_stream(), 1).await?;
    let letter = DeadLetter::decode(dead[0].payload.as_ref())?;
    assert_eq!(letter.reason, "router_gave_up");
    assert_eq!(letter.attempts, 3);
    assert!(letter.error.contains("3 times"), "{}", letter.error);
    assert!(letter.error.contains("max payload"), "{}", letter.error);
    assert!(letter.error.contains("left out"), "{}", letter.error);
    let kept = letter.event.context("the envelope is kept")?;
    assert_eq!(kept.id, "evt_poison");
    assert!(kept.body.is_empty(), "the body, too large, is left out");
    router.wait_all_acked(11).await?;
    router.stop().await
}
