//! The batcher against a real NATS: what goes out as one batch, what is stored, what each
//! request is answered.

use std::{collections::BTreeSet, time::Duration};

use async_nats::jetstream::{self, stream::Stream};
use bytes::Bytes;
use hookyard_core::streams::Topology;
use hookyard_testkit::{Nats, unique_namespace};
use tokio::sync::{mpsc, oneshot};

use super::*;

type Answer = oneshot::Receiver<Result<PublishAck, PublishError>>;

struct Setup {
    _nats: Nats,
    client: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
}

async fn setup(in_max_bytes: Option<i64>) -> anyhow::Result<Setup> {
    let nats = Nats::start().await?;
    let client = nats.client().await?;
    let js = jetstream::new(client.clone());
    let mut topology = Topology::new(&unique_namespace("bat"));
    if let Some(bytes) = in_max_bytes {
        topology.limits.in_max_bytes = bytes;
    }
    topology.ensure_in(&js).await?;
    Ok(Setup {
        _nats: nats,
        client,
        js,
        topology,
    })
}

fn pending(topology: &Topology, event_id: &str, size: usize) -> (Pending, Answer) {
    let (answer, answered) = oneshot::channel();
    let pending = Pending {
        subject: topology.in_subject("shop"),
        event_id: event_id.to_owned(),
        source: "shop".to_owned(),
        payload: Bytes::from(vec![b'x'; size]),
        trace: async_nats::HeaderMap::new(),
        answer,
    };
    (pending, answered)
}

/// A batcher started with events already queued, and their answers to come.
struct Started {
    answers: Vec<Answer>,
    batcher: tokio::task::JoinHandle<()>,
}

impl Started {
    /// Every answer, in order, once the batcher has ended.
    async fn results(self) -> anyhow::Result<Vec<Result<PublishAck, PublishError>>> {
        let mut results = Vec::new();
        for answered in self.answers {
            results.push(answered.await?);
        }
        self.batcher.await?;
        Ok(results)
    }
}

/// Queues `ids` before the batcher starts (so it finds them all waiting) and runs it with at
/// most `max` per batch and the publish `timeout`.
fn start_queued(
    setup: &Setup,
    ids: &[&str],
    max: usize,
    size: usize,
    timeout: Duration,
) -> anyhow::Result<Started> {
    let (queue, receiver) = mpsc::channel(ids.len());
    let mut answers = Vec::new();
    for id in ids {
        let (pending, answered) = pending(&setup.topology, id, size);
        queue
            .try_send(pending)
            .map_err(|_| anyhow::anyhow!("queue full"))?;
        answers.push(answered);
    }
    let settings = BatchSettings {
        max_messages: max,
        ..BatchSettings::default()
    };
    let batcher = tokio::spawn(run(setup.client.clone(), timeout, settings, receiver));
    Ok(Started { answers, batcher })
}

/// [`start_queued`] with a 5 s publish timeout, and every answer in order.
async fn publish_queued(
    setup: &Setup,
    ids: &[&str],
    max: usize,
    size: usize,
) -> anyhow::Result<Vec<Result<PublishAck, PublishError>>> {
    start_queued(setup, ids, max, size, Duration::from_secs(5))?
        .results()
        .await
}

/// Replaces the stream with a plain subscriber on its subject: it receives what the batcher
/// sends, and the batcher gets no answer unless the test gives one.
async fn without_stream(setup: &Setup) -> anyhow::Result<async_nats::Subscriber> {
    setup.js.delete_stream(setup.topology.in_stream()).await?;
    let subscriber = setup
        .client
        .subscribe(setup.topology.in_subject("shop"))
        .await?;
    setup.client.flush().await?;
    Ok(subscriber)
}

/// Event ids and `Nats-Batch-Id` of every stored message, in stream order.
async fn stored(setup: &Setup) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut stream: Stream = setup.js.get_stream(setup.topology.in_stream()).await?;
    let state = stream.info().await?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(seq).await?;
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        out.push((
            header(HEADER_EVENT_ID).unwrap_or_default(),
            header("Nats-Batch-Id"),
        ));
    }
    Ok(out)
}

#[tokio::test]
async fn waiting_events_are_stored_as_one_atomic_batch_and_a_repeat_once() -> anyhow::Result<()> {
    let setup = setup(None).await?;
    let mut ids: Vec<String> = (0..30).map(|i| format!("e{i}")).collect();
    // The same event again while the first is still waiting (a sender's quick retry).
    ids.push("e7".to_owned());
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    let results = publish_queued(&setup, &ids, 100, 100).await?;

    let acks: Vec<PublishAck> = results.into_iter().collect::<Result<_, _>>()?;
    assert_eq!(
        acks[30].sequence, acks[7].sequence,
        "the repeat shares the ack"
    );
    let sequences: BTreeSet<u64> = acks.iter().map(|a| a.sequence).collect();
    assert_eq!(sequences.len(), 30);
    let stored = stored(&setup).await?;
    assert_eq!(stored.len(), 30);
    let batches: BTreeSet<_> = stored.iter().map(|(_, batch)| batch.clone()).collect();
    assert_eq!(batches.len(), 1, "one batch: {batches:?}");
    assert!(batches.iter().all(Option::is_some));
    let stored_ids: BTreeSet<_> = stored.into_iter().map(|(id, _)| id).collect();
    assert_eq!(stored_ids.len(), 30);
    Ok(())
}

#[tokio::test]
async fn batches_hold_at_most_max_messages() -> anyhow::Result<()> {
    let setup = setup(None).await?;
    let ids: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    for result in publish_queued(&setup, &ids, 10, 10).await? {
        result?;
    }

    let stored = stored(&setup).await?;
    assert_eq!(stored.len(), 25);
    let mut sizes = std::collections::BTreeMap::<Option<String>, usize>::new();
    for (_, batch) in stored {
        *sizes.entry(batch).or_default() += 1;
    }
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert!(sizes.values().all(|&n| n <= 10), "{sizes:?}");
    Ok(())
}

#[tokio::test]
async fn a_batch_with_an_already_stored_id_is_stored_event_by_event() -> anyhow::Result<()> {
    let setup = setup(None).await?;
    publish_queued(&setup, &["a", "b"], 100, 10)
        .await?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    // "b" is in the stream's duplicate window: JetStream refuses this batch as a whole.
    let acks: Vec<PublishAck> = publish_queued(&setup, &["c", "b", "d"], 100, 10)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;

    assert!(!acks[0].duplicate);
    assert!(
        acks[1].duplicate,
        "the repeat is acknowledged as a duplicate"
    );
    assert!(!acks[2].duplicate);
    let stored: Vec<String> = stored(&setup)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(stored, ["a", "b", "c", "d"]);
    Ok(())
}

#[tokio::test]
async fn a_refused_batch_fails_every_request_and_stores_nothing() -> anyhow::Result<()> {
    // Room for a few of the events but not for all: the batch cannot be stored whole.
    let setup = setup(Some(8 * 1024)).await?;
    let ids: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    let results = publish_queued(&setup, &ids, 100, 1024).await?;

    for result in &results {
        assert!(
            matches!(result, Err(PublishError::BatchRejected { .. })),
            "{result:?}"
        );
    }
    assert!(stored(&setup).await?.is_empty(), "nothing partially stored");
    Ok(())
}

#[tokio::test]
async fn a_batch_to_a_missing_stream_fails_every_request() -> anyhow::Result<()> {
    let setup = setup(None).await?;
    setup.js.delete_stream(setup.topology.in_stream()).await?;
    let ids: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    let results = publish_queued(&setup, &ids, 100, 10).await?;

    for result in &results {
        assert!(
            matches!(
                result,
                Err(PublishError::Rejected {
                    kind: PublishErrorKind::StreamNotFound,
                    ..
                })
            ),
            "{result:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn with_batching_off_every_waiting_event_is_published_at_once() -> anyhow::Result<()> {
    // No stream on the subject: a plain subscriber receives the publishes and holds their acks
    // until it has them all, so it sees how many the batcher sends before any ack comes back.
    let setup = setup(None).await?;
    let mut held = without_stream(&setup).await?;
    let ids: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let client = setup.client.clone();
    let stream = setup.topology.in_stream();
    let acker = tokio::spawn(async move {
        let mut replies = Vec::new();
        while replies.len() < 40 {
            let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(3), held.next()).await
            else {
                break;
            };
            replies.extend(message.reply);
        }
        let seen = replies.len();
        for (seq, reply) in replies.into_iter().enumerate() {
            let ack = format!(r#"{{"stream":"{stream}","seq":{}}}"#, seq + 1);
            client.publish(reply, ack.into()).await?;
        }
        anyhow::Ok(seen)
    });

    let results = publish_queued(&setup, &ids, 1, 10).await?;

    assert_eq!(acker.await??, 40, "all 40 were out before the first ack");
    let sequences: BTreeSet<u64> = results
        .into_iter()
        .map(|r| r.map(|ack| ack.sequence))
        .collect::<Result<_, _>>()?;
    assert_eq!(sequences.len(), 40, "each answered with its own ack");
    Ok(())
}

/// Runs the batcher with `ids` queued on a subject that only a silent subscriber takes, drops
/// the client's connection once every message is out, and returns the answers. The publish
/// timeout is a minute, so an answer that comes only when it runs out is a `Timeout`.
async fn answers_after_a_lost_connection(
    ids: &[&str],
) -> anyhow::Result<Vec<Result<PublishAck, PublishError>>> {
    let setup = setup(None).await?;
    let mut silent = without_stream(&setup).await?;
    let started = start_queued(&setup, ids, 100, 10, Duration::from_secs(60))?;
    for _ in ids {
        silent
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    }
    setup.client.force_reconnect().await?;
    started.results().await
}

#[tokio::test]
async fn a_batch_whose_connection_is_lost_is_answered_disconnected_at_once() -> anyhow::Result<()> {
    let results = answers_after_a_lost_connection(&["l1", "l2", "l3"]).await?;

    assert_eq!(results.len(), 3);
    for result in results {
        assert!(
            matches!(result, Err(PublishError::Disconnected)),
            "{result:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_lone_event_whose_connection_is_lost_is_answered_disconnected_at_once()
-> anyhow::Result<()> {
    let results = answers_after_a_lost_connection(&["alone"]).await?;

    assert!(
        matches!(results[..], [Err(PublishError::Disconnected)]),
        "{results:?}"
    );
    Ok(())
}
