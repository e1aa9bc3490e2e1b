//! Atomic JetStream batches (ADR-50, nats-server 2.12+): the messages of a batch are stored all
//! or none, and nats-server 2.15 syncs a whole batch to disk together, so under
//! `sync_interval: always` a batch of a hundred costs about what one message costs. Ingress
//! stores events this way (group commit), and its dedup records; the router its work items.
//!
//! async-nats 0.51 has no batch API, hence the raw headers: every message but the last goes out
//! as a core NATS message with `Nats-Batch-Id` and `Nats-Batch-Sequence`, the last adds
//! `Nats-Batch-Commit` and is a request; the server answers it with one PubAck whose `seq` is
//! the last message's (the others precede it), or with the error that made it store nothing.

use std::{future::Future, sync::atomic::Ordering, time::Duration};

use async_nats::{
    HeaderMap,
    client::RequestErrorKind,
    connection::State,
    jetstream::{context::PublishErrorKind, publish::PublishAck},
};
use bytes::Bytes;
use serde::Deserialize;

/// JetStream's limit on the messages of one atomic batch.
pub const MAX_ATOMIC: usize = 1000;
/// JetStream error code: the batch holds a message id already stored (or twice).
pub const ERR_DUPLICATE_MSG_ID: u64 = 10201;
/// JetStream error code: the stream does not allow atomic publishing.
pub const ERR_ATOMIC_DISABLED: u64 = 10174;

/// Why a batch was not stored. After [`BatchError::Timeout`] or [`BatchError::ConnectionLost`]
/// it may still be, later.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// No answer to the commit within the timeout.
    #[error("no acknowledgement of the batch within {0:?}")]
    Timeout(Duration),
    /// The connection the batch went out on was lost before its answer came.
    #[error("the connection to NATS was lost before the batch was acknowledged")]
    ConnectionLost,
    /// The batch could not be sent (not connected, no stream for the subject, a message over
    /// the server's `max_payload`).
    #[error("the batch could not be sent ({0})")]
    NotSent(PublishErrorKind),
    /// The server refused the batch as a whole and stored none of it.
    #[error("jetstream refused the batch (error code {err_code}: {description})")]
    Refused {
        /// JetStream's error code (for example 10077 stream full, 10201 duplicate message id).
        err_code: u64,
        /// JetStream's description of the error.
        description: String,
    },
}

/// Stores `messages` (subject, headers, payload; all on one stream) as one atomic batch and
/// returns each message's ack, in order.
pub async fn publish(
    client: &async_nats::Client,
    timeout: Duration,
    messages: Vec<(String, HeaderMap, Bytes)>,
) -> Result<Vec<PublishAck>, BatchError> {
    let count = messages.len();
    let reply = commit(client, timeout, messages).await?;
    acks(&reply, count)
}

/// Sends `messages` as one atomic batch and returns the commit's answer, unread.
pub async fn commit(
    client: &async_nats::Client,
    timeout: Duration,
    messages: Vec<(String, HeaderMap, Bytes)>,
) -> Result<Bytes, BatchError> {
    // A fresh inbox ends in a unique token (a nuid, 22 characters; JetStream allows 64).
    let inbox = client.new_inbox();
    let id = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
    let last = messages.len();
    let commit = async {
        for (i, (subject, mut headers, payload)) in messages.into_iter().enumerate() {
            headers.insert("Nats-Batch-Id", id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            if i + 1 < last {
                client
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|_| BatchError::NotSent(PublishErrorKind::Other))?;
            } else {
                headers.insert("Nats-Batch-Commit", "1");
                let reply = client
                    .request_with_headers(subject, headers, payload)
                    .await
                    .map_err(|error| match error.kind() {
                        RequestErrorKind::TimedOut => BatchError::Timeout(timeout),
                        RequestErrorKind::NoResponders => {
                            BatchError::NotSent(PublishErrorKind::StreamNotFound)
                        }
                        RequestErrorKind::MaxPayloadExceeded => {
                            BatchError::NotSent(PublishErrorKind::MaxPayloadExceeded)
                        }
                        _ => BatchError::NotSent(PublishErrorKind::Other),
                    })?;
                return Ok(reply.payload);
            }
        }
        Err(BatchError::NotSent(PublishErrorKind::Other))
    };
    let answer = unless_connection_lost(client, commit);
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(ConnectionLost)) => Err(BatchError::ConnectionLost),
        Err(_) => Err(BatchError::Timeout(timeout)),
    }
}

/// The client lost its connection while a request was waiting for its answer.
#[derive(Debug)]
pub struct ConnectionLost;

/// How often [`unless_connection_lost`] looks at the connection.
const CONNECTION_CHECK: Duration = Duration::from_millis(50);

/// Runs `request` (something sent on `client` that waits for the server's answer) unless the
/// connection is lost first. async-nats keeps such a request waiting across a reconnect, yet its
/// answer went to the old connection, so without this it waits out its whole timeout: with a
/// cluster node killed, the event in flight (and every one queued behind it) would hold its
/// sender that long instead of getting a 503 to retry on at once. The counter of connects
/// catches a reconnect that came and went between two looks.
pub async fn unless_connection_lost<F: Future>(
    client: &async_nats::Client,
    request: F,
) -> Result<F::Output, ConnectionLost> {
    let statistics = client.statistics();
    let connects = statistics.connects.load(Ordering::Relaxed);
    let lost = async {
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            check.tick().await;
            if client.connection_state() != State::Connected
                || statistics.connects.load(Ordering::Relaxed) != connects
            {
                return;
            }
        }
    };
    tokio::select! {
        biased;
        output = request => Ok(output),
        () = lost => Err(ConnectionLost),
    }
}

/// The commit's answer: a PubAck of the batch or an error.
#[derive(Deserialize)]
struct CommitReply {
    #[serde(default)]
    stream: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    domain: String,
    batch: Option<String>,
    count: Option<u64>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// One ack per message from the batch's PubAck: the last message has `seq`, the others the
/// sequences before it.
pub fn acks(payload: &[u8], messages: usize) -> Result<Vec<PublishAck>, BatchError> {
    let reply: CommitReply = serde_json::from_slice(payload).map_err(|_| BatchError::Refused {
        err_code: 0,
        description: "unreadable commit reply".to_owned(),
    })?;
    if let Some(error) = reply.error {
        return Err(BatchError::Refused {
            err_code: error.err_code,
            description: error.description,
        });
    }
    let count = reply.count.unwrap_or(messages as u64);
    if count != messages as u64 || reply.seq < count {
        return Err(BatchError::Refused {
            err_code: 0,
            description: format!("commit acknowledged {count} of {messages} messages"),
        });
    }
    let first = reply.seq + 1 - count;
    Ok((0..count)
        .map(|i| PublishAck {
            stream: reply.stream.clone(),
            sequence: first + i,
            domain: reply.domain.clone(),
            duplicate: false,
            value: None,
            batch_id: reply.batch.clone(),
            batch_size: Some(count),
        })
        .collect())
}

/// How long [`store_each`] waits for a batch's commit, as the JetStream context's publish
/// timeout.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Stores each of `messages` (subject, payload; all on one stream that allows atomic
/// publishing) and says for each whether it was stored: several go out as one atomic batch,
/// one commit for all of them; a single message, or a batch that was refused or not answered,
/// is published message by message, all at once (so a batch whose answer was lost may be
/// stored twice). For records that need no message id (audit and outcome records), whose
/// writers retry or count what was not stored.
pub async fn store_each(
    client: &async_nats::Client,
    messages: &[(String, Bytes)],
) -> Vec<Result<(), crate::dlq::PublishFailed>> {
    if (2..=MAX_ATOMIC).contains(&messages.len()) {
        let batch = messages
            .iter()
            .map(|(subject, payload)| (subject.clone(), HeaderMap::new(), payload.clone()))
            .collect();
        match publish(client, STORE_TIMEOUT, batch).await {
            Ok(_) => return messages.iter().map(|_| Ok(())).collect(),
            Err(error) => {
                tracing::debug!(%error, messages = messages.len(), "batch not stored, publishing its messages one by one");
            }
        }
    }
    let js = async_nats::jetstream::new(client.clone());
    futures::future::join_all(messages.iter().map(|(subject, payload)| {
        crate::work::publish(&js, subject.clone(), HeaderMap::new(), payload.clone())
    }))
    .await
}
