//! The router's outbound messages: one work item per handler, or one unrouted dead letter.
//! Every message carries a `Nats-Msg-Id` derived from the event id, so a retried publish is
//! stored once, and the functions here return only when JetStream acknowledged all of them.

use async_nats::{HeaderMap, jetstream};
use futures::future::join_all;
use hookyard_core::{
    envelope::{self, HEADER_EVENT_ID, HEADER_HANDLER, NATS_MSG_ID},
    streams::Topology,
};
use hookyard_proto::event::v1::{DeadLetter, Envelope, WorkItem};
use prost::Message as _;

use crate::Error;

/// Dead-letter reason of events no route takes.
pub(crate) const REASON_UNROUTED: &str = "unrouted";
/// Dead-letter reason of payloads that are not a valid envelope.
pub(crate) const REASON_BAD_EVENT: &str = "bad_event";

/// Publishes a work item for each handler, all at once, and waits for every acknowledgement.
pub(crate) async fn work_items(
    js: &jetstream::Context,
    topology: &Topology,
    event: &Envelope,
    event_type: &str,
    handlers: &[String],
) -> Result<(), Error> {
    let mut pending = Vec::with_capacity(handlers.len());
    for handler in handlers {
        let subject = topology.work_subject(handler);
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
        let ack = js
            .publish_with_headers(subject.clone(), headers, item.encode_to_vec().into())
            .await
            .map_err(|source| Error::Publish {
                subject: subject.clone(),
                source,
            })?;
        pending.push(async move {
            ack.await
                .map(|_| ())
                .map_err(|source| Error::Publish { subject, source })
        });
    }
    join_all(pending).await.into_iter().collect()
}

/// A dead letter for the unrouted subject.
pub(crate) struct Unroutable {
    /// The event, or what could be recovered of it.
    pub event: Envelope,
    /// The event type, when one was extracted.
    pub event_type: String,
    /// [`REASON_UNROUTED`] or [`REASON_BAD_EVENT`].
    pub reason: &'static str,
    /// Why, for operators (never contains a secret).
    pub error: String,
    /// Deliveries of the inbound message so far.
    pub attempts: u32,
    /// Key the `Nats-Msg-Id` is derived from: the event id, or the stream sequence when the
    /// payload has none.
    pub dedup_key: String,
}

/// Publishes one dead letter to the unrouted subject and waits for its acknowledgement.
pub(crate) async fn unroutable(
    js: &jetstream::Context,
    topology: &Topology,
    dead: Unroutable,
) -> Result<(), Error> {
    let letter = DeadLetter {
        event: Some(dead.event),
        handler: String::new(),
        event_type: dead.event_type,
        reason: dead.reason.to_owned(),
        error: dead.error,
        attempts: dead.attempts,
        last_status: 0,
        failed_at_ms: envelope::now_ms(),
    };
    let msg_id = unrouted_msg_id(&dead.dedup_key);
    hookyard_core::dlq::publish(js, topology.unrouted_subject(), &msg_id, &letter)
        .await
        .map_err(|e| Error::Publish {
            subject: e.subject,
            source: e.source,
        })
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
