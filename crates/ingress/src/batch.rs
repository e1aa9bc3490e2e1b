//! Group commit: one task takes the events waiting to be stored and publishes them to
//! `HOOKYARD_IN` as one atomic JetStream batch (ADR-50, nats-server 2.12+), so a burst of
//! requests costs one commit round trip instead of one each.
//!
//! The loop: wait for the first event; take everything else already queued (up to
//! [`BatchSettings::max_messages`]); send the batch when it is full or
//! [`BatchSettings::linger`] after its first event (default zero: at once, so a lone request is
//! never held back) and no batch is in flight ([`IN_FLIGHT`]). While one is, the next fills
//! up, so the batch size follows the load without any timer. With batching
//! off (`max_messages` 1) every waiting event is published at once, each on its own.
//!
//! A batch of one event is an ordinary JetStream publish. A larger one is an atomic batch
//! ([`hookyard_core::batch`]): the server stores all of it or none and answers with one PubAck.
//! Every message keeps `Nats-Msg-Id` = event id:
//! - the same event twice in one batch (a sender retrying while the first try is queued) is
//!   sent once, and both requests get its ack;
//! - the server refuses a whole atomic batch that holds an id already in the stream's
//!   duplicate window (error 10201), storing nothing; the batch is then published event by
//!   event, where the repeat is acknowledged as a duplicate and the others are stored once.
//!   The same fallback covers a stream without `allow_atomic` (error 10174).
//!
//! Any other failure (not connected, the connection lost before the answer came, no PubAck
//! within the publish timeout, stream missing or full) answers every request of the batch with
//! the error, so each sender gets a 503; an atomic batch that failed stored nothing. A batch
//! that timed out or lost its connection may still be committed later: the senders' retries
//! then collapse onto it through the message ids.

use std::{collections::HashMap, time::Duration};

use async_nats::{
    HeaderMap,
    connection::State,
    jetstream::{self, context::PublishErrorKind, publish::PublishAck},
};
use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
use hookyard_core::{
    batch::{self, BatchError, ERR_ATOMIC_DISABLED, ERR_DUPLICATE_MSG_ID, MAX_ATOMIC},
    envelope::{HEADER_EVENT_ID, HEADER_SOURCE, NATS_MSG_ID},
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::publish::{BatchSettings, PublishError};

/// Batches in flight at once: one being stored while the next fills up in the queue.
/// nats-server commits a stream's atomic batches one after the other, each with a cost of its
/// own (on a one-replica stream, a staging store made and deleted per batch), so a second batch
/// in flight only splits what is waiting in two: measured, one in flight accepted 1.4× as many
/// events at c=256 with less CPU per event (docs/benchmarks.md).
pub(crate) const IN_FLIGHT: usize = 1;

/// How many publishes may be in flight at once: [`IN_FLIGHT`] batches, or, with batching off
/// (`max_messages` 1), every waiting event, pipelined as the naive "one publish per request"
/// is. One at a time would make each event wait for the round trips of all queued before it.
fn in_flight_limit(settings: &BatchSettings) -> usize {
    if settings.max_messages <= 1 {
        settings.queue.max(1)
    } else {
        IN_FLIGHT
    }
}

/// One event waiting to be stored, and where its outcome goes.
pub(crate) struct Pending {
    pub subject: String,
    pub event_id: String,
    pub source: String,
    pub payload: Bytes,
    /// The request's trace context (`traceparent`, `tracestate`), for the router to continue.
    pub trace: HeaderMap,
    pub answer: oneshot::Sender<Result<PublishAck, PublishError>>,
}

/// One message of a batch: the first request with its event id, and every request that
/// brought the same id.
struct Message {
    first: Pending,
    also: Vec<oneshot::Sender<Result<PublishAck, PublishError>>>,
}

impl Message {
    fn answer(self, result: Result<PublishAck, PublishError>) {
        for other in self.also {
            let _ = other.send(
                result
                    .as_ref()
                    .map(Clone::clone)
                    .map_err(PublishError::again),
            );
        }
        let _ = self.first.answer.send(result);
    }
}

/// Runs the batcher until `queue` is closed (every [`Publisher`](crate::publish::Publisher)
/// dropped) and the batches in flight are answered.
pub(crate) async fn run(
    client: async_nats::Client,
    timeout: Duration,
    settings: BatchSettings,
    mut queue: mpsc::Receiver<Pending>,
) {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(timeout);
    let sender = Sender {
        client,
        js,
        timeout,
    };
    let max = settings.max_messages.clamp(1, MAX_ATOMIC);
    let limit = in_flight_limit(&settings);
    let mut batch: Vec<Pending> = Vec::with_capacity(max);
    let mut deadline = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut closed = false;
    loop {
        let due = batch.len() >= max || Instant::now() >= deadline;
        if !batch.is_empty() && in_flight.len() < limit && due {
            in_flight.push(sender.send(std::mem::take(&mut batch)));
            continue;
        }
        if closed && batch.is_empty() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            item = queue.recv(), if !closed && batch.len() < max => match item {
                Some(pending) => {
                    if batch.is_empty() {
                        deadline = Instant::now() + settings.linger;
                    }
                    batch.push(pending);
                    while batch.len() < max {
                        match queue.try_recv() {
                            Ok(pending) => batch.push(pending),
                            Err(_) => break,
                        }
                    }
                }
                None => closed = true,
            },
            () = tokio::time::sleep_until(deadline), if !batch.is_empty() && Instant::now() < deadline => {}
        }
    }
}

/// What publishing needs.
struct Sender {
    client: async_nats::Client,
    js: jetstream::Context,
    timeout: Duration,
}

impl Sender {
    /// Publishes `batch` and answers every request in it.
    async fn send(&self, batch: Vec<Pending>) {
        let messages = collapse(batch);
        if messages.is_empty() {
            return;
        }
        if self.client.connection_state() != State::Connected {
            for message in messages {
                message.answer(Err(PublishError::Disconnected));
            }
            return;
        }
        if messages.len() == 1 {
            return self.one_by_one(messages).await;
        }
        match self.atomic(&messages).await {
            Ok(acks) => {
                for (message, ack) in messages.into_iter().zip(acks) {
                    message.answer(Ok(ack));
                }
            }
            Err(PublishError::BatchRejected { err_code, .. })
                if err_code == ERR_DUPLICATE_MSG_ID || err_code == ERR_ATOMIC_DISABLED =>
            {
                tracing::debug!(
                    err_code,
                    events = messages.len(),
                    "batch refused as a whole, publishing its events one by one"
                );
                self.one_by_one(messages).await;
            }
            Err(error) => {
                tracing::warn!(%error, events = messages.len(), "batch not stored");
                for message in messages {
                    message.answer(Err(error.again()));
                }
            }
        }
    }

    /// Publishes each message on its own, all at once, each answered with its own outcome.
    async fn one_by_one(&self, messages: Vec<Message>) {
        let publishes = messages.into_iter().map(|message| async move {
            let result = self.publish_one(&message.first).await;
            message.answer(result);
        });
        futures::future::join_all(publishes).await;
    }

    async fn publish_one(&self, pending: &Pending) -> Result<PublishAck, PublishError> {
        let rejected = |source: jetstream::context::PublishError| PublishError::Rejected {
            kind: source.kind(),
            source,
        };
        let publish = async {
            self.js
                .publish_with_headers(
                    pending.subject.clone(),
                    headers(pending),
                    pending.payload.clone(),
                )
                .await
                .map_err(rejected)?
                .await
                .map_err(rejected)
        };
        let answer = batch::unless_connection_lost(&self.client, publish);
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(Err(PublishError::Rejected {
                kind: PublishErrorKind::TimedOut,
                ..
            })))
            | Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(Ok(result)) => result,
            Ok(Err(batch::ConnectionLost)) => Err(PublishError::Disconnected),
        }
    }

    /// Sends `messages` as one atomic batch and returns each message's ack.
    async fn atomic(&self, messages: &[Message]) -> Result<Vec<PublishAck>, PublishError> {
        let batch = messages.iter().map(|m| {
            let pending = &m.first;
            (
                pending.subject.clone(),
                headers(pending),
                pending.payload.clone(),
            )
        });
        Ok(batch::publish(&self.client, self.timeout, batch.collect()).await?)
    }
}

/// Groups the requests of a batch by event id, dropping requests nobody waits for anymore.
fn collapse(batch: Vec<Pending>) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::with_capacity(batch.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for pending in batch {
        if pending.answer.is_closed() {
            continue;
        }
        if let Some(&at) = index.get(&pending.event_id) {
            messages[at].also.push(pending.answer);
        } else {
            index.insert(pending.event_id.clone(), messages.len());
            messages.push(Message {
                first: pending,
                also: Vec::new(),
            });
        }
    }
    messages
}

fn headers(pending: &Pending) -> HeaderMap {
    let mut headers = pending.trace.clone();
    headers.insert(NATS_MSG_ID, pending.event_id.as_str());
    headers.insert(HEADER_EVENT_ID, pending.event_id.as_str());
    headers.insert(HEADER_SOURCE, pending.source.as_str());
    headers
}

impl From<BatchError> for PublishError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::Timeout(after) => Self::Timeout(after),
            BatchError::ConnectionLost => Self::Disconnected,
            BatchError::NotSent(kind) => Self::Rejected {
                kind,
                source: kind.into(),
            },
            BatchError::Refused {
                err_code,
                description,
            } => Self::BatchRejected {
                err_code,
                description,
            },
        }
    }
}

impl PublishError {
    /// The same error again, for another request of the same batch.
    pub(crate) fn again(&self) -> Self {
        match self {
            Self::Disconnected => Self::Disconnected,
            Self::Timeout(after) => Self::Timeout(*after),
            Self::DedupNotReady => Self::DedupNotReady,
            Self::DedupCheck { kind, .. } => Self::DedupCheck {
                kind: *kind,
                source: (*kind).into(),
            },
            Self::Rejected { kind, .. } => Self::Rejected {
                kind: *kind,
                source: (*kind).into(),
            },
            Self::BatchRejected {
                err_code,
                description,
            } => Self::BatchRejected {
                err_code: *err_code,
                description: description.clone(),
            },
            Self::Overloaded => Self::Overloaded,
            Self::StoreFull => Self::StoreFull,
            Self::Stopped => Self::Stopped,
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
