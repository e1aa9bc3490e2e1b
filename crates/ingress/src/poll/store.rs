//! Storing the events of one page in `HOOKYARD_IN`: all of them in one atomic JetStream batch
//! (up to JetStream's 1000 messages; a larger page goes in several), each under its own subject
//! `hookyard.in.<source>.<event id>` with `Nats-Expected-Last-Subject-Sequence: 0`.
//!
//! That expectation is the long-window dedup of polling: the stream refuses an event whose
//! subject already holds a message, for as long as it keeps it (`in_max_age`, 7 days), however
//! long after the first poll a record is read again. `Nats-Msg-Id` (the event id) collapses a
//! publish retried within the stream's 2-minute window the same way. A batch holding one event
//! the stream already has is refused whole (a wrong last sequence or a duplicate id); the page
//! is then stored event by event, where each known event is counted as a duplicate and the others
//! are stored once.
//!
//! The batch itself is [`hookyard_core::batch`] (ADR-50): the server stores all of it or none
//! and answers the commit.

use std::{collections::HashSet, time::Duration};

use async_nats::{
    HeaderMap,
    connection::State,
    header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
    jetstream::{self, context::PublishErrorKind},
};
use bytes::Bytes;
use hookyard_core::{
    batch::{self, BatchError, ERR_ATOMIC_DISABLED, ERR_DUPLICATE_MSG_ID, MAX_ATOMIC},
    envelope::{HEADER_EVENT_ID, HEADER_SOURCE, NATS_MSG_ID},
    streams::Topology,
};
use hookyard_proto::event::v1::Envelope;
use prost::Message as _;

use super::{PollError, StoreFailure};

/// JetStream error code: an expectation failed (here: an event already stored). With a
/// duplicate message id or a stream that takes no batches, the batch is stored event by event.
const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;

/// How many events of a page were new and how many the stream already had.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Events stored now.
    pub new: usize,
    /// Events the stream already had (records read again).
    pub duplicates: usize,
}

/// Publishes pages of events.
#[derive(Clone)]
pub struct Store {
    client: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
    timeout: Duration,
}

impl Store {
    /// A store bounding each NATS round trip by `timeout`.
    pub fn new(client: async_nats::Client, topology: Topology, timeout: Duration) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        Self {
            client,
            js,
            topology,
            timeout,
        }
    }

    /// Stores `events` (the same event twice is sent once) and returns what became of them
    /// once JetStream has acknowledged all of them.
    pub async fn page(&self, events: Vec<Envelope>) -> Result<Stored, PollError> {
        if self.client.connection_state() != State::Connected {
            return Err(PollError::Store(StoreFailure::Disconnected));
        }
        let mut seen = HashSet::new();
        let mut messages: Vec<Message> = events
            .into_iter()
            .filter(|e| seen.insert(e.id.clone()))
            .map(|e| self.message(&e))
            .collect();
        let mut stored = Stored::default();
        while !messages.is_empty() {
            let rest = messages.split_off(messages.len().min(MAX_ATOMIC));
            let chunk = std::mem::replace(&mut messages, rest);
            let part = match self.atomic(&chunk).await {
                Ok(()) => Stored {
                    new: chunk.len(),
                    duplicates: 0,
                },
                Err(Refused::Known) => self.one_by_one(&chunk).await?,
                Err(Refused::Failed(failure)) => return Err(PollError::Store(failure)),
            };
            stored.new += part.new;
            stored.duplicates += part.duplicates;
        }
        Ok(stored)
    }

    fn message(&self, event: &Envelope) -> Message {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MSG_ID, event.id.as_str());
        headers.insert(HEADER_EVENT_ID, event.id.as_str());
        headers.insert(HEADER_SOURCE, event.source.as_str());
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
        Message {
            subject: self.topology.in_event_subject(&event.source, &event.id),
            headers,
            payload: Bytes::from(event.encode_to_vec()),
        }
    }

    /// Publishes each message on its own; one the stream already has counts as a duplicate.
    async fn one_by_one(&self, messages: &[Message]) -> Result<Stored, PollError> {
        let publishes = messages.iter().map(|m| self.publish_one(m));
        let mut stored = Stored::default();
        for result in futures::future::join_all(publishes).await {
            match result? {
                true => stored.new += 1,
                false => stored.duplicates += 1,
            }
        }
        Ok(stored)
    }

    /// True when stored now, false when the stream already had it.
    async fn publish_one(&self, m: &Message) -> Result<bool, PollError> {
        let publish = async {
            let ack = self
                .js
                .publish_with_headers(m.subject.clone(), m.headers.clone(), m.payload.clone())
                .await?;
            ack.await
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(ack)) => Ok(!ack.duplicate),
            Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Ok(Err(e)) if e.kind() == PublishErrorKind::TimedOut => {
                Err(PollError::Store(StoreFailure::Timeout(self.timeout)))
            }
            Ok(Err(e)) => Err(PollError::Store(StoreFailure::Rejected(e.kind()))),
            Err(_) => Err(PollError::Store(StoreFailure::Timeout(self.timeout))),
        }
    }

    /// Sends `messages` as one atomic batch (a single one as a plain publish).
    async fn atomic(&self, messages: &[Message]) -> Result<(), Refused> {
        let [first] = messages else {
            return self.batch(messages).await;
        };
        match self.publish_one(first).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refused::Known),
            Err(PollError::Store(failure)) => Err(Refused::Failed(failure)),
            Err(_) => Err(Refused::Failed(StoreFailure::Disconnected)),
        }
    }

    async fn batch(&self, messages: &[Message]) -> Result<(), Refused> {
        let batch = messages
            .iter()
            .map(|m| (m.subject.clone(), m.headers.clone(), m.payload.clone()))
            .collect();
        match batch::publish(&self.client, self.timeout, batch).await {
            Ok(_) => Ok(()),
            Err(BatchError::Refused {
                err_code: ERR_WRONG_LAST_SEQUENCE | ERR_DUPLICATE_MSG_ID | ERR_ATOMIC_DISABLED,
                ..
            }) => Err(Refused::Known),
            Err(BatchError::Refused { err_code, .. }) => {
                Err(Refused::Failed(StoreFailure::BatchRefused(err_code)))
            }
            Err(BatchError::NotSent(kind)) => Err(Refused::Failed(StoreFailure::Rejected(kind))),
            Err(BatchError::Timeout(after)) => Err(Refused::Failed(StoreFailure::Timeout(after))),
            Err(BatchError::ConnectionLost) => Err(Refused::Failed(StoreFailure::Disconnected)),
        }
    }
}

struct Message {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

/// Why a batch stored nothing.
enum Refused {
    /// It holds an event the stream already has (or the stream takes no batches).
    Known,
    /// Anything else.
    Failed(StoreFailure),
}
