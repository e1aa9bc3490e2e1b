//! What survives a poll: the cursor and the time of the last successful poll of each source,
//! one JSON record under the source's name in `HOOKYARD_POLL_CURSORS`.
//!
//! It is written only after every record of the poll is acknowledged, and only if nobody wrote
//! it since this poll read it (compare-and-set on the revision): a replica that lost its lease
//! mid-poll cannot move the cursor back over a newer one.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{PollError, StoreFailure};

/// The stored state of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// `$cursor` of the next poll.
    pub cursor: serde_json::Value,
    /// Unix milliseconds at which the last successful poll started.
    pub polled_at_ms: i64,
}

/// The state as read, with the revision a write must expect (0: none stored yet).
#[derive(Debug, Clone)]
pub struct Read {
    /// The stored state, `None` before the first successful poll.
    pub state: Option<State>,
    /// Its revision.
    pub revision: u64,
}

/// Reads and writes source states.
#[derive(Clone)]
pub struct Cursors {
    store: kv::Store,
    timeout: Duration,
}

fn failure(what: &'static str) -> impl Fn(String) -> PollError {
    move |detail| PollError::Cursor { what, detail }
}

impl Cursors {
    /// Cursors in `store`, each call bounded by `timeout`.
    pub fn new(store: kv::Store, timeout: Duration) -> Self {
        Self { store, timeout }
    }

    /// The state of `source`.
    pub async fn read(&self, source: &str) -> Result<Read, PollError> {
        let entry = tokio::time::timeout(self.timeout, self.store.entry(source))
            .await
            .map_err(|_| PollError::Store(StoreFailure::Timeout(self.timeout)))?
            .map_err(|e| failure("read the cursor")(e.to_string()))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(Read {
                state: None,
                revision: 0,
            });
        };
        let state = serde_json::from_slice(&entry.value)
            .map_err(|e| failure("decode the stored cursor")(e.to_string()))?;
        Ok(Read {
            state: Some(state),
            revision: entry.revision,
        })
    }

    /// Writes `state` if the stored one is still the one `read` saw.
    pub async fn write(&self, source: &str, read: &Read, state: &State) -> Result<(), PollError> {
        let value = Bytes::from(serde_json::to_vec(state).unwrap_or_default());
        let write = async {
            if read.revision == 0 {
                self.store
                    .create(source, value)
                    .await
                    .map(|_| ())
                    .map_err(|e| match e.kind() {
                        kv::CreateErrorKind::AlreadyExists => PollError::CursorMoved,
                        _ => failure("store the cursor")(e.to_string()),
                    })
            } else {
                self.store
                    .update(source, value, read.revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| match e.kind() {
                        kv::UpdateErrorKind::WrongLastRevision => PollError::CursorMoved,
                        _ => failure("store the cursor")(e.to_string()),
                    })
            }
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| PollError::Store(StoreFailure::Timeout(self.timeout)))?
    }
}
