//! The router's outbound messages: one work item per handler (stored through the group commit
//! in `batch`), or one unrouted dead letter. Every message carries a `Nats-Msg-Id` derived
//! from the event id, so a retried publish is stored once, and the functions here return only
//! when JetStream acknowledged all of them.

use async_nats::{
    HeaderMap,
    jetstream::{self, context::PublishErrorKind},
};
use hookyard_core::{
    envelope::{self, HEADER_EVENT_ID, HEADER_HANDLER, NATS_MSG_ID},
    streams::Topology,
    work::Stored,
};
use hookyard_proto::event::v1::{DeadLetter, Envelope, WorkItem};
use prost::Message as _;

use crate::{
    Error,
    batch::{Batcher, Item},
};

/// Dead-letter reason of events no route takes.
pub(crate) const REASON_UNROUTED: &str = "unrouted";
/// Dead-letter reason of payloads that are not a valid envelope.
pub(crate) const REASON_BAD_EVENT: &str = "bad_event";
/// Dead-letter reason of events the router failed to route `max_deliver` times.
pub(crate) const REASON_GAVE_UP: &str = "router_gave_up";

/// Stores a work item for each handler through the router's group commit and waits until all
/// are stored; says for each handler whether its item went to the work queue or, the handler
/// being at its cap, to the wait stream.
pub(crate) async fn work_items(
    batcher: &Batcher,
    event: &Envelope,
    event_type: &str,
    handlers: &[String],
) -> Result<Vec<Stored>, Error> {
    let items = handlers.iter().map(|handler| {
        let item = WorkItem {
            event: Some(event.clone()),
            handler: handler.clone(),
            event_type: event_type.to_owned(),
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            NATS_MSG_ID,
            envelope::work_msg_id(&event.id, handler).as_str(),
        );
        headers.insert(HEADER_EVENT_ID, event.id.as_str());
        headers.insert(HEADER_HANDLER, handler.as_str());
        // The worker continues the event's trace from the route span.
        hookyard_core::trace::to_nats(&tracing::Span::current(), &mut headers);
        Item {
            handler: handler.clone(),
            headers,
            payload: item.encode_to_vec().into(),
        }
    });
    batcher.store(items.collect()).await
}

/// A dead letter for the unrouted subject.
pub(crate) struct Unroutable {
    /// The event, or what could be recovered of it.
    pub event: Envelope,
    /// The event type, when one was extracted.
    pub event_type: String,
    /// [`REASON_UNROUTED`], [`REASON_BAD_EVENT`] or [`REASON_GAVE_UP`].
    pub reason: &'static str,
    /// Why, for operators (never contains a secret).
    pub error: String,
    /// Deliveries of the inbound message so far.
    pub attempts: u32,
    /// Key the `Nats-Msg-Id` is derived from: the event id, or the stream sequence when the
    /// payload has none.
    pub dedup_key: String,
}

/// Publishes one dead letter to the unrouted subject and waits for its acknowledgement. A letter
/// over the server's `max_payload` (an event that barely fit, plus the reason) is stored
/// without the body, saying where the full event stays.
pub(crate) async fn unroutable(
    js: &jetstream::Context,
    topology: &Topology,
    dead: Unroutable,
    sequence: u64,
) -> Result<(), Error> {
    let msg_id = unrouted_msg_id(&dead.dedup_key);
    let subject = topology.unrouted_subject();
    let mut letter = dead_letter(dead);
    let mut stored = hookyard_core::dlq::publish(js, subject.clone(), &msg_id, &letter).await;
    if let Err(e) = &stored
        && e.source.kind() == PublishErrorKind::MaxPayloadExceeded
        && let Some(event) = letter.event.as_mut()
    {
        let bytes = std::mem::take(&mut event.body).len();
        letter.error = format!(
            "{}; the body ({bytes} bytes) is left out of this dead letter, too large for it: the event stays in {} at sequence {sequence}",
            letter.error,
            topology.in_stream()
        );
        stored = hookyard_core::dlq::publish(js, subject, &msg_id, &letter).await;
    }
    stored.map_err(|e| Error::Publish {
        subject: e.subject,
        source: e.source,
    })
}

fn dead_letter(dead: Unroutable) -> DeadLetter {
    DeadLetter {
        event: Some(dead.event),
        handler: String::new(),
        event_type: dead.event_type,
        reason: dead.reason.to_owned(),
        error: dead.error,
        attempts: dead.attempts,
        last_status: 0,
        failed_at_ms: envelope::now_ms(),
    }
}

/// `Nats-Msg-Id` of an unrouted dead letter.
pub(crate) fn unrouted_msg_id(dedup_key: &str) -> String {
    format!("{dedup_key}:{}", hookyard_core::streams::UNROUTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrouted_msg_id_is_event_id_and_suffix() {
        assert_eq!(unrouted_msg_id("evt_1"), "evt_1:unrouted");
    }
}
