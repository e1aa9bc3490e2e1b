//! Storing an envelope in `HOOKYARD_IN` and waiting for JetStream's acknowledgement.
//!
//! The sender gets its 2xx only after the PubAck, so every failure here becomes a 503: the
//! client is not connected (checked first, because async-nats buffers publishes while
//! disconnected and would otherwise only fail at the deadline), no ack within the publish
//! timeout, or an error ack (stream missing, stream full under `discard: new`).

use std::time::Duration;

use async_nats::{
    connection::State,
    jetstream::{self, context::PublishErrorKind, publish::PublishAck},
};
use bytes::Bytes;
use hookyard_core::envelope::{HEADER_EVENT_ID, HEADER_SOURCE, NATS_MSG_ID};

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
}

/// Publishes envelopes with a bounded wait for the ack.
#[derive(Clone)]
pub(crate) struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    timeout: Duration,
}

impl Publisher {
    pub(crate) fn new(client: async_nats::Client, timeout: Duration) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        Self {
            client,
            js,
            timeout,
        }
    }

    /// Publishes `payload` to `subject` with `Nats-Msg-Id` set to the event id, and waits for
    /// the ack.
    pub(crate) async fn publish(
        &self,
        subject: String,
        event_id: &str,
        source: &str,
        payload: Bytes,
    ) -> Result<PublishAck, PublishError> {
        if self.client.connection_state() != State::Connected {
            return Err(PublishError::Disconnected);
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(NATS_MSG_ID, event_id);
        headers.insert(HEADER_EVENT_ID, event_id);
        headers.insert(HEADER_SOURCE, source);
        let rejected = |source: jetstream::context::PublishError| PublishError::Rejected {
            kind: source.kind(),
            source,
        };
        let publish = async {
            self.js
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(rejected)?
                .await
                .map_err(rejected)
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Err(PublishError::Rejected {
                kind: PublishErrorKind::TimedOut,
                ..
            }))
            | Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(result) => result,
        }
    }
}
