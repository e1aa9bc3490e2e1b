//! Storing an envelope in `HOOKYARD_IN` and waiting for JetStream's acknowledgement.
//!
//! The sender gets its 2xx only after the PubAck, so every failure here becomes a 503: the
//! client is not connected (checked first, because async-nats buffers publishes while
//! disconnected and would otherwise only fail at the deadline), no ack within the publish
//! timeout, an error ack (stream missing, stream full under `discard: new`), or too many events
//! already waiting to be published.
//!
//! Requests do not publish themselves: they hand their event to one batcher task (see
//! [`crate::batch`]) through a bounded queue and wait for its answer. The batcher groups what
//! arrives together into one atomic JetStream batch (group commit) and answers every request
//! of the batch with the batch's outcome.
//!
//! A refusal for lack of space marks the store full ([`crate::capacity`]); while it is, events
//! are refused at once with [`PublishError::StoreFull`] rather than sent to the same refusal.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, context::PublishErrorKind, publish::PublishAck};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::{
    batch::{self, Pending},
    capacity::Capacity,
};

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The NATS client is not connected.
    #[error("nats is not connected")]
    Disconnected,
    /// No acknowledgement within the publish timeout.
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    /// The dedup bucket has not been created yet, so a repeat cannot be recognised.
    #[error("the dedup bucket is not ready")]
    DedupNotReady,
    /// Looking the event id up in the dedup bucket failed (bucket missing, NATS trouble).
    #[error("dedup lookup failed ({kind})")]
    DedupCheck {
        /// The async-nats error kind.
        kind: jetstream::kv::EntryErrorKind,
        #[source]
        source: jetstream::kv::EntryError,
    },
    /// JetStream refused the write or the publish failed.
    #[error("jetstream refused the event ({kind})")]
    Rejected {
        /// The async-nats error kind.
        kind: PublishErrorKind,
        #[source]
        source: jetstream::context::PublishError,
    },
    /// JetStream refused the whole atomic batch the event was in; nothing of it was stored.
    #[error("jetstream refused the batch (error code {err_code}: {description})")]
    BatchRejected {
        /// JetStream's error code (for example 10077 stream full, 10201 duplicate message id).
        err_code: u64,
        /// JetStream's description of the error.
        description: String,
    },
    /// The publish queue is full: more events are waiting for JetStream than
    /// [`BatchSettings::queue`] allows.
    #[error("too many events waiting to be stored")]
    Overloaded,
    /// A recent publish was refused for lack of space and none has been freed since.
    #[error("the jetstream store is full")]
    StoreFull,
    /// The batcher task has stopped (ingress is shutting down).
    #[error("the publisher has stopped")]
    Stopped,
}

/// Group commit: how events waiting to be stored are grouped into JetStream batches.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Most events in one batch (1 turns batching off: every event is its own publish). At most
    /// 1000, JetStream's limit for an atomic batch; larger values are lowered to it.
    pub max_messages: usize,
    /// Longest wait for more events once a batch has its first one (zero, the default: never
    /// wait; a batch takes what queued up while the previous ones were in flight, so a lone
    /// event goes out at once).
    pub linger: Duration,
    /// Most events waiting for a batch; one more is refused with 503 at once instead of
    /// queueing without bound.
    pub queue: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_messages: 100,
            linger: Duration::ZERO,
            queue: 1024,
        }
    }
}

/// Publishes envelopes through the batcher, with a bounded wait for the ack.
#[derive(Clone)]
pub(crate) struct Publisher {
    queue: mpsc::Sender<Pending>,
    timeout: Duration,
    capacity: Arc<Capacity>,
}

impl Publisher {
    /// A publisher grouping events as `batch` says. Starts the batcher task, which ends when the
    /// last clone of the publisher is dropped.
    pub(crate) fn with_batch(
        client: async_nats::Client,
        timeout: Duration,
        batch: BatchSettings,
        capacity: Arc<Capacity>,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(batch.queue.max(1));
        tokio::spawn(batch::run(client, timeout, batch, receiver));
        Self {
            queue,
            timeout,
            capacity,
        }
    }

    /// Publishes `payload` to `subject` with `Nats-Msg-Id` set to the event id, and waits for
    /// the ack of the batch it goes out in.
    pub(crate) async fn publish(
        &self,
        subject: String,
        event_id: &str,
        source: &str,
        payload: Bytes,
        trace: async_nats::HeaderMap,
    ) -> Result<PublishAck, PublishError> {
        if self.capacity.is_full() {
            return Err(PublishError::StoreFull);
        }
        let result = self.send(subject, event_id, source, payload, trace).await;
        if let Err(error) = &result {
            self.capacity.observe(error);
        }
        result
    }

    async fn send(
        &self,
        subject: String,
        event_id: &str,
        source: &str,
        payload: Bytes,
        trace: async_nats::HeaderMap,
    ) -> Result<PublishAck, PublishError> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            subject,
            event_id: event_id.to_owned(),
            source: source.to_owned(),
            payload,
            trace,
            answer,
        };
        self.queue.try_send(pending).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => PublishError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => PublishError::Stopped,
        })?;
        // The batcher bounds its own wait for NATS; this bounds the wait in the queue as well.
        match tokio::time::timeout(self.timeout, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PublishError::Stopped),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_waiting() {
        // Nobody takes from the queue: the first event waits, the second finds it full.
        let (queue, _receiver) = mpsc::channel(1);
        let publisher = Publisher {
            queue,
            timeout: Duration::from_millis(200),
            capacity: Arc::default(),
        };
        let none = async_nats::HeaderMap::new;
        let waiting = publisher.publish("s".into(), "a", "src", Bytes::new(), none());
        let refused = publisher.publish("s".into(), "b", "src", Bytes::new(), none());
        let (waiting, refused) = tokio::join!(waiting, refused);
        assert!(
            matches!(refused, Err(PublishError::Overloaded)),
            "{refused:?}"
        );
        assert!(
            matches!(waiting, Err(PublishError::Timeout(_))),
            "{waiting:?}"
        );
    }
}
