//! Group commit of work items: a burst of events is stored in atomic batches, and a batch the
//! server refuses as a whole is stored item by item.

use std::collections::{HashMap, HashSet};

use async_nats::HeaderMap;
use hookyard_core::envelope::NATS_MSG_ID;
use hookyard_testkit::{Nats, stored};

use super::{Router, event, msg_id, wait_stored};

/// Publishes `events` to the in stream all at once, as a burst of ingress batches would.
async fn publish_burst(router: &Router, events: usize) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(events);
    for i in 0..events {
        let mut headers = HeaderMap::new();
        let id = format!("evt_burst_{i}");
        headers.insert(NATS_MSG_ID, id.as_str());
        let payload = prost::Message::encode_to_vec(&event(&id, Some("order.created")));
        let subject = router.topology.in_subject("shop");
        acks.push(
            router
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_burst_of_events_is_stored_in_atomic_batches_each_item_once() -> anyhow::Result<()> {
    const EVENTS: usize = 500;
    let nats = Nats::start().await?;
    let router = Router::start(&nats).await?;
    publish_burst(&router, EVENTS).await?;
    // Two handlers per event.
    let work = wait_stored(&router.js, &router.topology.work_stream(), 2 * EVENTS).await?;
    let ids: HashSet<&str> = work.iter().filter_map(msg_id).collect();
    assert_eq!(ids.len(), 2 * EVENTS, "every work item once");
    let mut batches: HashMap<&str, usize> = HashMap::new();
    for m in &work {
        if let Some(batch) = m.headers.get("Nats-Batch-Id") {
            *batches.entry(batch.as_str()).or_default() += 1;
        }
    }
    let batched: usize = batches.values().sum();
    // The router takes events as they come, so the first few may go alone; the burst does not.
    assert!(
        batched >= 2 * EVENTS * 9 / 10,
        "{batched} of {} items in batches",
        2 * EVENTS
    );
    assert!(
        batches.len() <= EVENTS / 5,
        "{} batches for {EVENTS} events",
        batches.len()
    );
    router.wait_all_acked(EVENTS as u64).await?;
    router.stop().await
}

#[tokio::test]
async fn items_stored_before_a_redelivery_make_the_batch_go_item_by_item_and_are_not_repeated()
-> anyhow::Result<()> {
    const EVENTS: usize = 50;
    let nats = Nats::start().await?;
    let router = Router::start(&nats).await?;
    // The items of one event are in the work queue already, as after a router that stored them
    // and died before acking: a batch holding their message ids is refused as a whole.
    let early = event("evt_burst_7", Some("order.created"));
    for handler in ["orders", "audit"] {
        let mut headers = HeaderMap::new();
        let id = hookyard_core::envelope::work_msg_id(&early.id, handler);
        headers.insert(NATS_MSG_ID, id.as_str());
        router
            .js
            .publish_with_headers(
                router.topology.work_subject(handler),
                headers,
                "stored earlier".into(),
            )
            .await?
            .await?;
    }
    publish_burst(&router, EVENTS).await?;
    let work = wait_stored(&router.js, &router.topology.work_stream(), 2 * EVENTS).await?;
    let ids: HashSet<&str> = work.iter().filter_map(msg_id).collect();
    assert_eq!(ids.len(), 2 * EVENTS, "every work item once");
    router.wait_all_acked(EVENTS as u64).await?;
    // Nothing more arrives after every event is acknowledged.
    assert_eq!(
        stored(&router.js, &router.topology.work_stream())
            .await?
            .len(),
        2 * EVENTS
    );
    router.stop().await
}
