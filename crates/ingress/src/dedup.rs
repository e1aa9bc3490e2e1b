//! The long-window dedup check: has this event id been accepted before, within the source's
//! `dedup_window`?
//!
//! `HOOKYARD_IN`'s own `duplicate_window` (2 minutes) collapses publish retries; a sender that
//! retries days later is caught here instead. Before publishing, ingress looks the event id up
//! in the `HOOKYARD_DEDUP` bucket: a record whose receive time is within the source's window
//! means the event is already stored, and the sender gets 202 with the same id without a
//! second copy. After the PubAck the id is recorded, in the background so the answer does not
//! wait for it; a record older than the window is replaced, so the window runs from the last
//! accepted copy. The bucket keeps a record for `StreamLimits::dedup_window` (7 days), the
//! longest window a source may have; a record is ~150 bytes on disk.
//!
//! A source whose window is off (the default when its event id is the body hash, where two
//! distinct events with one body share an id) neither looks up nor records: only the stream's
//! window applies, and the KV round trip is off its hot path.
//!
//! A lookup that fails is NATS trouble, answered 503 like a failed publish: guessing "not seen"
//! could store a duplicate, guessing "seen" could acknowledge an event that is not stored. A
//! failed record only costs the long window for that one event (the stream window still holds),
//! so it is logged and the event stays accepted. Two replicas racing on one id both publish; the
//! stream's msg-id dedup stores it once and the second write finds the key already written.

use std::{sync::OnceLock, time::Duration};

use async_nats::{
    connection::State,
    jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind},
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

    /// What the bucket knows of `event_id`, judged against `window` at `now_ms`. Fails when
    /// that cannot be known: bucket not created yet, NATS disconnected, no answer within the
    /// timeout, an error answer (bucket missing).
    pub(crate) async fn lookup(
        &self,
        event_id: &str,
        window: Duration,
        now_ms: i64,
    ) -> Result<Recorded, PublishError> {
        let store = self.store.get().ok_or(PublishError::DedupNotReady)?;
        if self.client.connection_state() != State::Connected {
            return Err(PublishError::Disconnected);
        }
        match tokio::time::timeout(self.timeout, store.entry(event_id)).await {
            Ok(Ok(Some(entry))) if entry.operation == Operation::Put => {
                Ok(judge(&entry.value, entry.revision, window, now_ms))
            }
            Ok(Ok(_)) => Ok(Recorded::Nothing),
            Ok(Err(source)) => Err(PublishError::DedupCheck {
                kind: source.kind(),
                source,
            }),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }

    /// Records `event_id` as accepted, replacing the record `lookup` found older than the
    /// window, in a background task bounded by the timeout. Never fails the request: the event
    /// is already stored.
    pub(crate) fn remember(
        &self,
        source: &str,
        event_id: &str,
        received_at_ms: i64,
        previous: Recorded,
    ) {
        let Some(store) = self.store.get().cloned() else {
            return;
        };
        let (source, event_id, timeout) = (source.to_owned(), event_id.to_owned(), self.timeout);
        tokio::spawn(async move {
            let value = Bytes::from(received_at_ms.to_string());
            match tokio::time::timeout(timeout, write(&store, &event_id, value, previous)).await {
                Ok(Ok(())) => {}
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

/// What the bucket holds for an event id, judged against a source's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Accepted within the window: the request is a repeat.
    Within,
    /// No record: the event is new.
    Nothing,
    /// Accepted before the window, at this revision of the key: the event is new, and its
    /// record replaces that one.
    Before(u64),
}

/// Judges a record whose value is the receive time in ms, as [`Dedup::remember`] writes it.
fn judge(value: &[u8], revision: u64, window: Duration, now_ms: i64) -> Recorded {
    let received_at_ms = std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok());
    // Ingress only writes decimal ms, so something else wrote this record: an operator marking
    // an id by hand, or a damaged entry. Either way it says the id was taken within the
    // bucket's retention, and there is no time for the window to narrow that, so it counts as
    // within: a hand-written record keeps an id out. Wrong, this guess answers one new event
    // 202 without storing it; the other guess, wrong, stores a copy handlers act on twice.
    let Some(received_at_ms) = received_at_ms else {
        return Recorded::Within;
    };
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    // A record from the future (another replica's clock ahead of this one) is within.
    if now_ms.saturating_sub(received_at_ms) <= window_ms {
        Recorded::Within
    } else {
        Recorded::Before(revision)
    }
}

/// Writes the record; `Ok` also when another replica (or an earlier copy within the stream
/// window) wrote it first, since the record then says the same.
async fn write(
    store: &kv::Store,
    event_id: &str,
    value: Bytes,
    previous: Recorded,
) -> Result<(), async_nats::Error> {
    match previous {
        // Compare-and-set, so two replicas replacing one stale record write it once.
        Recorded::Before(revision) => match store.update(event_id, value, revision).await {
            Err(error) if error.kind() != UpdateErrorKind::WrongLastRevision => Err(error.into()),
            _ => Ok(()),
        },
        Recorded::Nothing | Recorded::Within => match store.create(event_id, value).await {
            Err(error) if error.kind() != CreateErrorKind::AlreadyExists => Err(error.into()),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3600 * 1000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn at(ms: i64) -> Vec<u8> {
        ms.to_string().into_bytes()
    }

    #[test]
    fn a_record_counts_as_a_repeat_only_within_the_window() {
        let now = 100 * HOUR_MS;
        assert_eq!(
            judge(&at(now - 10 * 60 * 1000), 3, HOUR, now),
            Recorded::Within
        );
        assert_eq!(judge(&at(now - HOUR_MS), 3, HOUR, now), Recorded::Within);
        assert_eq!(
            judge(&at(now - HOUR_MS - 1), 3, HOUR, now),
            Recorded::Before(3)
        );
        assert_eq!(
            judge(&at(now - 2 * HOUR_MS), 7, HOUR, now),
            Recorded::Before(7)
        );
        assert_eq!(judge(&at(now + HOUR_MS), 3, HOUR, now), Recorded::Within);
    }

    #[test]
    fn an_unreadable_record_counts_as_a_repeat() {
        for value in [
            &b""[..],
            b"yesterday",
            b"\xff\xfe",
            b"1.5e12",
            b"99999999999999999999",
        ] {
            assert_eq!(judge(value, 1, HOUR, 0), Recorded::Within, "{value:?}");
        }
    }

    #[test]
    fn extreme_times_and_windows_do_not_overflow() {
        assert_eq!(judge(&at(i64::MIN), 1, HOUR, i64::MAX), Recorded::Before(1));
        assert_eq!(
            judge(&at(i64::MIN), 1, Duration::MAX, i64::MAX),
            Recorded::Within
        );
        assert_eq!(judge(&at(0), 1, Duration::ZERO, 0), Recorded::Within);
    }
}
