//! The long-window dedup check: has this event id been accepted before, within
//! `StreamLimits::dedup_window`?
//!
//! `HOOKYARD_IN`'s own `duplicate_window` (2 minutes) collapses publish retries; a sender that
//! retries days later is caught here instead. Before publishing, ingress looks the event id up
//! in the `HOOKYARD_DEDUP` bucket: found means the event is already stored, and the sender gets
//! 202 with the same id without a second copy. After the PubAck the id is recorded, in the
//! background so the answer does not wait for it.
//!
//! A lookup that fails is NATS trouble, answered 503 like a failed publish: guessing "not seen"
//! could store a duplicate, guessing "seen" could acknowledge an event that is not stored. A
//! failed record only costs the long window for that one event (the stream window still holds),
//! so it is logged and the event stays accepted. Two replicas racing on one id both publish; the
//! stream's msg-id dedup stores it once and the second `create` finds the key already there.

use std::{sync::OnceLock, time::Duration};

use async_nats::{
    connection::State,
    jetstream::kv::{self, CreateErrorKind},
};
use bytes::Bytes;

use crate::publish::PublishError;

/// The bucket handle (once the background setup has created it) and the bound on each call.
pub(crate) struct Dedup {
    client: async_nats::Client,
    store: OnceLock<kv::Store>,
    timeout: Duration,
}

impl Dedup {
    pub(crate) fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self {
            client,
            store: OnceLock::new(),
            timeout,
        }
    }

    /// Records the bucket handle once the bucket exists. The handle only names the bucket, so
    /// it stays valid when the bucket is recreated.
    pub(crate) fn set_store(&self, store: kv::Store) {
        let _ = self.store.set(store);
    }

    /// Whether the bucket is known to exist (its handle was set).
    pub(crate) fn has_store(&self) -> bool {
        self.store.get().is_some()
    }

    /// True when `event_id` was accepted within the dedup window. Fails when that cannot be
    /// known: bucket not created yet, NATS disconnected, no answer within the timeout, an error
    /// answer (bucket missing).
    pub(crate) async fn seen(&self, event_id: &str) -> Result<bool, PublishError> {
        let store = self.store.get().ok_or(PublishError::DedupNotReady)?;
        if self.client.connection_state() != State::Connected {
            return Err(PublishError::Disconnected);
        }
        match tokio::time::timeout(self.timeout, store.get(event_id)).await {
            Ok(Ok(found)) => Ok(found.is_some()),
            Ok(Err(source)) => Err(PublishError::DedupCheck {
                kind: source.kind(),
                source,
            }),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }

    /// Records `event_id` as accepted, in a background task bounded by the timeout. Never
    /// fails the request: the event is already stored.
    pub(crate) fn remember(&self, source: &str, event_id: &str, received_at_ms: i64) {
        let Some(store) = self.store.get().cloned() else {
            return;
        };
        let (source, event_id, timeout) = (source.to_owned(), event_id.to_owned(), self.timeout);
        tokio::spawn(async move {
            let value = Bytes::from(received_at_ms.to_string());
            match tokio::time::timeout(timeout, store.create(&event_id, value)).await {
                Ok(Ok(_)) => {}
                // Another replica (or an earlier copy within the stream window) recorded it.
                Ok(Err(error)) if error.kind() == CreateErrorKind::AlreadyExists => {}
                Ok(Err(error)) => {
                    tracing::warn!(%source, %event_id, %error, "event stored but not recorded for long-window dedup");
                }
                Err(_) => {
                    tracing::warn!(%source, %event_id, ?timeout, "event stored but recording it for long-window dedup timed out");
                }
            }
        });
    }
}
