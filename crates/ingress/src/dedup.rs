//! The long-window dedup check: has this event id been accepted before, within the source's
//! `dedup_window`?
//!
//! `HOOKYARD_IN`'s own `duplicate_window` (2 minutes) collapses publish retries; a sender that
//! retries days later is caught here instead. Before publishing, ingress looks the event id up
//! in the `HOOKYARD_DEDUP` bucket: a record whose receive time is within the source's window
//! means the event is already stored, and the sender gets 202 with the same id without a
//! second copy. After the PubAck the id is recorded, in the background so the answer does not
//! wait for it: records wait in a queue and one task writes whatever is waiting as one atomic
//! batch of puts (the bucket's stream allows atomic publishing), so under load recording costs
//! one commit per group of events, as storing them does, not a lone write per event. A put
//! replaces a record older than the window, so the window runs from the last accepted copy. The bucket keeps a record for `StreamLimits::dedup_window` (7 days), the
//! longest window a source may have; a record is ~150 bytes on disk.
//!
//! A source whose window is off (the default when its event id is the body hash, where two
//! distinct events with one body share an id) neither looks up nor records: only the stream's
//! window applies, and the KV round trip is off its hot path.
//!
//! A lookup that fails is NATS trouble, answered 503 like a failed publish: guessing "not seen"
//! could store a duplicate, guessing "seen" could acknowledge an event that is not stored. A
//! failed record only costs the long window for that one event (the stream window still holds),
//! so it is logged and the event stays accepted; so is a record dropped because too many wait.
//! Two replicas racing on one id both publish; the stream's msg-id dedup stores it once and
//! both records say the same.

use std::{sync::OnceLock, time::Duration};

use async_nats::{
    connection::State,
    jetstream::kv::{self, Operation},
};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::publish::PublishError;

/// Records waiting to be written; past it a record is dropped with a warning (the event stays
/// stored; only its long window is lost).
const RECORDS_QUEUE: usize = 16 * 1024;

/// The bucket handle (once the background setup has created it), the bound on each call, and
/// the queue of records to write.
pub(crate) struct Dedup {
    client: async_nats::Client,
    store: OnceLock<kv::Store>,
    timeout: Duration,
    records: mpsc::Sender<Record>,
}

/// One accepted event id to record: its key's subject in the bucket's stream, and the value.
struct Record {
    subject: String,
    value: Bytes,
}

impl Dedup {
    /// Also starts the task writing records, which ends when the `Dedup` is dropped.
    pub(crate) fn new(client: async_nats::Client, timeout: Duration) -> Self {
        let (records, queue) = mpsc::channel(RECORDS_QUEUE);
        tokio::spawn(write_all(client.clone(), queue));
        Self {
            client,
            store: OnceLock::new(),
            timeout,
            records,
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
                Ok(judge(&entry.value, window, now_ms))
            }
            Ok(Ok(_)) => Ok(Recorded::Nothing),
            Ok(Err(source)) => Err(PublishError::DedupCheck {
                kind: source.kind(),
                source,
            }),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }

    /// Records `event_id` as accepted (replacing an older record), through the queue the
    /// writing task empties in atomic batches. Never fails the request: the event is already
    /// stored.
    pub(crate) fn remember(&self, source: &str, event_id: &str, received_at_ms: i64) {
        let Some(store) = self.store.get() else {
            return;
        };
        let prefix = store.put_prefix.as_deref().unwrap_or(&store.prefix);
        let record = Record {
            subject: format!("{prefix}{event_id}"),
            value: Bytes::from(received_at_ms.to_string()),
        };
        if self.records.try_send(record).is_err() {
            tracing::warn!(%source, %event_id, "event stored but not recorded for long-window dedup: too many records waiting");
        }
    }
}

/// Writes queued records until every sender is gone: whatever is waiting goes out as one atomic
/// batch (a put per key: the bucket keeps one value per key), so recording costs one commit
/// per group of events, like storing them, not one per event.
async fn write_all(client: async_nats::Client, mut queue: mpsc::Receiver<Record>) {
    let mut batch = Vec::with_capacity(hookyard_core::batch::MAX_ATOMIC);
    while queue
        .recv_many(&mut batch, hookyard_core::batch::MAX_ATOMIC)
        .await
        > 0
    {
        let records: Vec<_> = batch.drain(..).map(|r| (r.subject, r.value)).collect();
        let failed: Vec<String> = hookyard_core::batch::store_each(&client, &records)
            .await
            .into_iter()
            .filter_map(|stored| stored.err())
            .map(|error| hookyard_core::telemetry::report(&error))
            .collect();
        if let Some(error) = failed.first() {
            tracing::warn!(records = failed.len(), %error, "events stored but not recorded for long-window dedup");
        }
    }
}

/// What the bucket holds for an event id, judged against a source's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Accepted within the window: the request is a repeat.
    Within,
    /// No record: the event is new.
    Nothing,
    /// Accepted before the window: the event is new, and its record replaces that one.
    Before,
}

/// Judges a record whose value is the receive time in ms, as [`Dedup::remember`] writes it.
fn judge(value: &[u8], window: Duration, now_ms: i64) -> Recorded {
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
        Recorded::Before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream;

    /// A burst of records goes out in atomic batches, not one write each: the stored records
    /// carry their batch's id, and there are far fewer batches than records.
    #[tokio::test]
    async fn a_burst_of_records_is_written_in_atomic_batches() -> anyhow::Result<()> {
        let nats = hookyard_testkit::Nats::start().await?;
        let client = nats.client().await?;
        let topology =
            hookyard_core::streams::Topology::new(&hookyard_testkit::unique_namespace("dd"));
        let store = topology
            .ensure_dedup(&jetstream::new(client.clone()))
            .await?;
        let dedup = Dedup::new(client.clone(), Duration::from_secs(5));
        dedup.set_store(store);
        for i in 0..500 {
            dedup.remember("shop", &format!("evt_{i:04}"), 1_000 + i);
        }
        let js = jetstream::new(client);
        let stream = topology.dedup_stream();
        hookyard_testkit::wait_for(Duration::from_secs(20), "500 records", || async {
            hookyard_testkit::stored(&js, &stream)
                .await
                .is_ok_and(|m| m.len() == 500)
        })
        .await?;
        let batches: std::collections::HashSet<String> = hookyard_testkit::stored(&js, &stream)
            .await?
            .iter()
            .map(|m| {
                m.headers
                    .get("Nats-Batch-Id")
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert!(
            !batches.contains("") && batches.len() < 50,
            "records in {} batches: {batches:?}",
            batches.len()
        );
        Ok(())
    }

    const HOUR_MS: i64 = 3600 * 1000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn at(ms: i64) -> Vec<u8> {
        ms.to_string().into_bytes()
    }

    #[test]
    fn a_record_counts_as_a_repeat_only_within_the_window() {
        let now = 100 * HOUR_MS;
        assert_eq!(
            judge(&at(now - 10 * 60 * 1000), HOUR, now),
            Recorded::Within
        );
        assert_eq!(judge(&at(now - HOUR_MS), HOUR, now), Recorded::Within);
        assert_eq!(judge(&at(now - HOUR_MS - 1), HOUR, now), Recorded::Before);
        assert_eq!(judge(&at(now - 2 * HOUR_MS), HOUR, now), Recorded::Before);
        assert_eq!(judge(&at(now + HOUR_MS), HOUR, now), Recorded::Within);
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
            assert_eq!(judge(value, HOUR, 0), Recorded::Within, "{value:?}");
        }
    }

    #[test]
    fn extreme_times_and_windows_do_not_overflow() {
        assert_eq!(judge(&at(i64::MIN), HOUR, i64::MAX), Recorded::Before);
        assert_eq!(
            judge(&at(i64::MIN), Duration::MAX, i64::MAX),
            Recorded::Within
        );
        assert_eq!(judge(&at(0), Duration::ZERO, 0), Recorded::Within);
    }
}
