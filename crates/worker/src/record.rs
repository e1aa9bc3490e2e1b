//! Outcome records: what each delivery came to (handled, retry, dead letter — with attempt,
//! status and error), one `DeliveryOutcome` on
//! `hookyard.audit.worker.<handler>.<outcome>.<event id>` in `HOOKYARD_AUDIT`, so the admin API
//! can show every handler's attempts at an event.
//!
//! Best effort and never in a delivery's way: [`Recorder::record`] only queues (a bounded
//! queue; when full the record is dropped), and one task stores what is queued as one atomic
//! batch ([`hookyard_core::batch::store_each`]: one commit for all of them). A record that could not
//! be queued or stored is counted in `hookyard_worker_outcome_records_dropped_total{reason}`
//! and logged, never retried at the expense of deliveries.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use bytes::Bytes;
use hookyard_core::{envelope, streams::Topology};
use hookyard_proto::event::v1::{DeliveryOutcome, WorkItem, delivery_outcome::Outcome};
use prost::Message as _;
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    metrics::Metrics,
    outcome::{Attempt, Verdict},
    report,
};

/// Records waiting to be published; more are dropped (and counted).
const QUEUE: usize = 8192;
/// Records published together before their acknowledgements are awaited.
const BATCH: usize = 256;
/// Longest wait between two attempts to create the audit stream.
const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where a worker's outcome records go.
pub(crate) struct Recorder {
    queue: mpsc::Sender<(String, Vec<u8>)>,
    topology: Topology,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Starts the publishing task. It first creates or updates `HOOKYARD_AUDIT` (retrying in
    /// the background, so a worker never waits for it); it ends when the recorder is dropped.
    pub(crate) fn start(js: jetstream::Context, topology: Topology, metrics: Arc<Metrics>) -> Self {
        let (queue, records) = mpsc::channel(QUEUE);
        tokio::spawn(publish(js, topology.clone(), records, metrics.clone()));
        Self {
            queue,
            topology,
            metrics,
        }
    }

    /// Queues the record of one delivery's outcome; never waits.
    pub(crate) fn record(
        &self,
        handler: &str,
        item: Option<&WorkItem>,
        delivered: u32,
        attempt: &Attempt,
        verdict: &Verdict,
    ) {
        let record = outcome(handler, item, delivered, attempt, verdict);
        let subject =
            self.topology
                .audit_worker_subject(handler, label(record.outcome()), &record.event_id);
        if self
            .queue
            .try_send((subject, record.encode_to_vec()))
            .is_err()
        {
            self.metrics.outcome_record_dropped("queue_full");
            warn!(handler, "outcome record queue full, record dropped");
        }
    }
}

/// The subject token of an outcome.
fn label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Handled => "handled",
        Outcome::Retry => "retry",
        Outcome::DeadLetter => "dead_letter",
        Outcome::Unspecified => "unspecified",
    }
}

fn outcome(
    handler: &str,
    item: Option<&WorkItem>,
    delivered: u32,
    attempt: &Attempt,
    verdict: &Verdict,
) -> DeliveryOutcome {
    let (status, error) = match attempt {
        Attempt::Succeeded => (0, String::new()),
        Attempt::Failed { status, error, .. } => (*status, error.clone()),
    };
    let (kind, reason, retry_in_ms) = match verdict {
        Verdict::Ack => (Outcome::Handled, "", 0),
        Verdict::Retry(delay) => (
            Outcome::Retry,
            "",
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        ),
        Verdict::DeadLetter(reason) => (Outcome::DeadLetter, reason.as_str(), 0),
        // A retry that spent no attempt: the reason says why none was possible.
        Verdict::Wait { delay, reason } => (
            Outcome::Retry,
            reason.label(),
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        ),
    };
    let mut record = DeliveryOutcome {
        event_id: item
            .and_then(|i| i.event.as_ref())
            .map(|e| e.id.clone())
            .unwrap_or_default(),
        handler: handler.to_owned(),
        event_type: item.map(|i| i.event_type.clone()).unwrap_or_default(),
        attempt: delivered,
        status,
        error,
        reason: reason.to_owned(),
        retry_in_ms,
        replay_id: item.map(|i| i.replay_id.clone()).unwrap_or_default(),
        at_ms: envelope::now_ms(),
        ..Default::default()
    };
    record.set_outcome(kind);
    record
}

async fn publish(
    js: jetstream::Context,
    topology: Topology,
    mut records: mpsc::Receiver<(String, Vec<u8>)>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_secs(1);
    while let Err(error) = topology.ensure_audit(&js).await {
        warn!(error = %report(&error), "audit stream setup failed, retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(SETUP_BACKOFF_MAX);
        if records.is_closed() {
            return;
        }
    }
    let mut batch = Vec::with_capacity(BATCH);
    let client = js.client();
    while records.recv_many(&mut batch, BATCH).await > 0 {
        let messages: Vec<(String, Bytes)> = batch
            .drain(..)
            .map(|(subject, record)| (subject, record.into()))
            .collect();
        for stored in hookyard_core::batch::store_each(&client, &messages).await {
            if let Err(error) = stored {
                metrics.outcome_record_dropped("not_stored");
                warn!(error = %report(&error), "outcome record not stored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Failure, Reason};
    use hookyard_proto::event::v1::Envelope;

    fn item() -> WorkItem {
        WorkItem {
            event: Some(Envelope {
                id: "evt_1".to_owned(),
                ..Default::default()
            }),
            handler: "orders".to_owned(),
            event_type: "order.created".to_owned(),
            replay_id: "rpl_1".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn a_retry_records_status_error_and_delay() {
        let failed = Attempt::Failed {
            kind: Failure::Retryable,
            status: 503,
            error: "step 0: the partner answered HTTP 503".to_owned(),
        };
        let r = outcome(
            "orders",
            Some(&item()),
            2,
            &failed,
            &Verdict::Retry(Duration::from_millis(250)),
        );
        assert_eq!(r.outcome(), Outcome::Retry);
        assert_eq!((r.attempt, r.status, r.retry_in_ms), (2, 503, 250));
        assert_eq!(r.event_id, "evt_1");
        assert_eq!(r.replay_id, "rpl_1");
        assert!(r.error.contains("503"));
    }

    #[test]
    fn a_dead_letter_records_its_reason_and_an_unreadable_item_has_no_id() {
        let failed = Attempt::Failed {
            kind: Failure::BadEvent,
            status: 0,
            error: "bad".to_owned(),
        };
        let verdict = Verdict::DeadLetter(Reason::BadEvent);
        let r = outcome("orders", None, 1, &failed, &verdict);
        assert_eq!(r.outcome(), Outcome::DeadLetter);
        assert_eq!(r.reason, "bad_event");
        assert_eq!(r.event_id, "");
        assert_eq!(label(r.outcome()), "dead_letter");
    }
}
