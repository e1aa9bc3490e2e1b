//! Group commit for work items: the route tasks hand over the work items of the events they
//! hold, and one task stores whatever is waiting as one atomic batch on `HOOKYARD_WORK`
//! ([`hookyard_core::batch`]), so under `sync_interval: always` a burst of events costs one
//! commit instead of one per item. A route task acks its inbound message only once its
//! event's items are stored, as before.
//!
//! The loop is ingress's: take everything waiting (up to [`MAX_EVENTS`] events), send it when
//! no batch is in flight ([`IN_FLIGHT`]), and let the next batch fill meanwhile, so
//! the batch size follows the load without a timer and a lone event is never held back.
//!
//! An atomic batch is stored all or none, so a batch the server refuses (an item whose
//! handler is at its cap in the work queue, a message id already stored by an earlier
//! delivery, a stream without `allow_atomic`) is stored item by item with
//! [`hookyard_core::work::store`], which parks a capped handler's item in `HOOKYARD_WAIT` and
//! acknowledges a repeat as a duplicate. The handlers found at their cap are remembered, and
//! their items go item by item from then on, until one of them fits in the work queue again:
//! one stalled handler does not cost everyone else their batches. A batch with no answer
//! within [`COMMIT_TIMEOUT`], or whose connection is lost before the answer, fails every event
//! in it: they are redelivered, and the message ids collapse a late commit with the retry.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{self, context::PublishErrorKind},
};
use bytes::Bytes;
use futures::{StreamExt as _, future::join_all, stream::FuturesUnordered};
use hookyard_core::{
    batch::{self, BatchError, MAX_ATOMIC},
    dlq::PublishFailed,
    streams::Topology,
    work::{self, Stored},
};
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// Batches in flight at once: one being stored while the next fills. One, as in ingress:
/// nats-server commits a stream's batches one after the other, so a second in flight would
/// only make both smaller.
const IN_FLIGHT: usize = 1;
/// Events whose items go in one batch at most.
const MAX_EVENTS: usize = 128;
/// How long a batch's commit may take, as the JetStream context's publish timeout.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One work item: its handler, headers (with its `Nats-Msg-Id`) and payload.
pub(crate) struct Item {
    pub handler: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// The items of one event, and where their outcome goes.
struct Group {
    items: Vec<Item>,
    answer: oneshot::Sender<Result<Vec<Stored>, Error>>,
}

/// Hands work items to the batching task; cloned into every route task.
#[derive(Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Group>,
}

impl Batcher {
    /// Starts the batching task, which ends once every `Batcher` is dropped and its batches
    /// are answered.
    pub(crate) fn start(client: async_nats::Client, topology: Topology) -> Self {
        let (queue, receiver) = mpsc::channel(crate::ROUTER_CONCURRENCY);
        let sender = Sender {
            js: jetstream::new(client.clone()),
            client,
            topology,
            capped: Arc::default(),
        };
        tokio::spawn(run(sender, receiver));
        Self { queue }
    }

    /// Stores `items` and says for each whether it went to the work queue or waits.
    pub(crate) async fn store(&self, items: Vec<Item>) -> Result<Vec<Stored>, Error> {
        let (answer, outcome) = oneshot::channel();
        let stopped = || Error::Publish {
            subject: String::new(),
            source: PublishErrorKind::Other.into(),
        };
        self.queue
            .send(Group { items, answer })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn run(sender: Sender, mut queue: mpsc::Receiver<Group>) {
    let mut in_flight = FuturesUnordered::new();
    let mut waiting = Vec::with_capacity(MAX_EVENTS);
    let mut closed = false;
    while !closed || !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            taken = queue.recv_many(&mut waiting, MAX_EVENTS), if !closed && in_flight.len() < IN_FLIGHT => {
                if taken == 0 {
                    closed = true;
                } else {
                    in_flight.push(sender.send(std::mem::take(&mut waiting)));
                }
            }
        }
    }
}

/// What storing a batch needs.
struct Sender {
    client: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
    /// Handlers last seen at their cap in the work queue.
    capped: Arc<Mutex<HashSet<String>>>,
}

impl Sender {
    /// Stores the items of `groups` and answers each group.
    async fn send(&self, groups: Vec<Group>) {
        let groups: Vec<Group> = groups
            .into_iter()
            .filter(|g| !g.answer.is_closed())
            .collect();
        let items: Vec<&Item> = groups.iter().flat_map(|g| &g.items).collect();
        let (batched, solo): (Vec<usize>, Vec<usize>) = {
            let capped = self.capped.lock().unwrap_or_else(|e| e.into_inner());
            (0..items.len()).partition(|&i| !capped.contains(&items[i].handler))
        };
        let mut outcomes: Vec<Option<Result<Stored, PublishFailed>>> =
            items.iter().map(|_| None).collect();
        let (atomic, alone) = tokio::join!(self.atomic(&items, &batched), self.each(&items, &solo));
        let retry = match atomic {
            Ok(()) => {
                for &i in &batched {
                    outcomes[i] = Some(Ok(Stored::Work));
                }
                Vec::new()
            }
            Err(error @ (BatchError::Timeout(_) | BatchError::ConnectionLost)) => {
                let kind = match error {
                    BatchError::ConnectionLost => PublishErrorKind::BrokenPipe,
                    _ => PublishErrorKind::TimedOut,
                };
                for &i in &batched {
                    outcomes[i] = Some(Err(self.unanswered(items[i], kind)));
                }
                Vec::new()
            }
            Err(error) => {
                tracing::debug!(%error, items = batched.len(), "batch refused as a whole, storing its items one by one");
                batched
            }
        };
        let again = self.each(&items, &retry).await;
        for (i, outcome) in solo.iter().zip(alone).chain(retry.iter().zip(again)) {
            outcomes[*i] = Some(outcome);
        }
        answer(groups, outcomes);
    }

    /// Stores the items at `indexes` as one atomic batch (a single item as a plain publish).
    async fn atomic(&self, items: &[&Item], indexes: &[usize]) -> Result<(), BatchError> {
        match indexes {
            [] => Ok(()),
            [one] => {
                let item = items[*one];
                let subject = self.topology.work_subject(&item.handler);
                work::publish(
                    &self.js,
                    subject,
                    item.headers.clone(),
                    item.payload.clone(),
                )
                .await
                .map_err(|e| BatchError::NotSent(e.source.kind()))
            }
            _ if indexes.len() > MAX_ATOMIC => Err(BatchError::NotSent(PublishErrorKind::Other)),
            _ => {
                let messages = indexes.iter().map(|&i| {
                    let item = items[i];
                    let subject = self.topology.work_subject(&item.handler);
                    (subject, item.headers.clone(), item.payload.clone())
                });
                batch::publish(&self.client, COMMIT_TIMEOUT, messages.collect())
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Stores the items at `indexes` one by one, all at once, in the work queue or, at their
    /// handler's cap, in the wait stream; remembers which handlers are capped.
    async fn each(&self, items: &[&Item], indexes: &[usize]) -> Vec<Result<Stored, PublishFailed>> {
        let stores = indexes.iter().map(|&i| {
            let item = items[i];
            let headers = item.headers.clone();
            work::store(
                &self.js,
                &self.topology,
                &item.handler,
                headers,
                item.payload.clone(),
            )
        });
        let outcomes = join_all(stores).await;
        let mut capped = self.capped.lock().unwrap_or_else(|e| e.into_inner());
        for (&i, outcome) in indexes.iter().zip(&outcomes) {
            match outcome {
                Ok(Stored::Waiting) => capped.insert(items[i].handler.clone()),
                Ok(Stored::Work) => capped.remove(&items[i].handler),
                Err(_) => false,
            };
        }
        outcomes
    }

    /// The failure of an item whose batch got no answer: `kind` says why (timed out, or the
    /// connection lost).
    fn unanswered(&self, item: &Item, kind: PublishErrorKind) -> PublishFailed {
        PublishFailed {
            subject: self.topology.work_subject(&item.handler),
            source: kind.into(),
        }
    }
}

/// Answers each group with its items' outcomes, in order: all stored, or the first failure.
fn answer(groups: Vec<Group>, outcomes: Vec<Option<Result<Stored, PublishFailed>>>) {
    let mut outcomes = outcomes.into_iter();
    for group in groups {
        let mine: Vec<_> = outcomes.by_ref().take(group.items.len()).collect();
        let stored: Result<Vec<Stored>, Error> = mine
            .into_iter()
            .map(|outcome| match outcome {
                Some(Ok(stored)) => Ok(stored),
                Some(Err(e)) => Err(Error::Publish {
                    subject: e.subject,
                    source: e.source,
                }),
                None => Err(Error::Publish {
                    subject: String::new(),
                    source: PublishErrorKind::Other.into(),
                }),
            })
            .collect();
        let _ = group.answer.send(stored);
    }
}
