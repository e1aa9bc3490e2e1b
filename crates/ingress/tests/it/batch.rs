//! Group commit seen from HTTP: requests arriving together share JetStream batches, every one
//! is answered 202 only once stored, and each event is stored once.

use std::{collections::BTreeSet, time::Duration};

use hookyard_testkit::Nats;

use crate::harness::{self, accepted_id};

#[tokio::test]
async fn concurrent_requests_share_batches_and_each_event_is_stored_once() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn_configured(nats.client().await?, harness::integration(), |s| {
        // A batch waits up to this long for more after its first event.
        s.batch.linger = Duration::from_millis(200);
    })
    .await?;

    // 40 events, 10 of them sent twice at the same time (the open source's id is the body hash).
    let bodies: Vec<Vec<u8>> = (0..40)
        .map(|n| format!("{{\"n\":{n}}}").into_bytes())
        .collect();
    let sends = bodies
        .iter()
        .chain(bodies.iter().take(10))
        .map(|body| ingress.post_open(body.clone()));
    let responses = futures::future::join_all(sends).await;
    let mut ids = Vec::new();
    for response in responses {
        ids.push(accepted_id(response?).await?);
    }

    assert_eq!(
        ids[40..],
        ids[..10],
        "a repeat is answered with the first one's id"
    );
    let messages = ingress.messages().await?;
    let stored: BTreeSet<String> = messages.iter().map(|(_, e)| e.id.clone()).collect();
    assert_eq!(messages.len(), 40, "every event once");
    assert_eq!(stored, ids.iter().cloned().collect::<BTreeSet<_>>());
    let batches: BTreeSet<String> = messages
        .iter()
        .filter_map(|(headers, _)| headers.get("Nats-Batch-Id").map(|v| v.as_str().to_owned()))
        .collect();
    let in_batches = messages
        .iter()
        .filter(|(headers, _)| headers.get("Nats-Batch-Id").is_some())
        .count();
    assert!(
        in_batches > batches.len(),
        "some requests shared a batch: {in_batches} events in {} batches",
        batches.len()
    );
    ingress.stop().await
}

#[tokio::test]
async fn nats_down_answers_every_waiting_request_503() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(1)).await?;
    accepted_id(ingress.post_open(b"before".to_vec()).await?).await?;

    nats.stop().await?;
    let sends = (0..20).map(|n| ingress.post_open(format!("during {n}").into_bytes()));
    for response in futures::future::join_all(sends).await {
        let response = response?;
        assert_eq!(response.status().as_u16(), 503);
        assert!(
            response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER)
        );
    }
    ingress.stop().await
}
