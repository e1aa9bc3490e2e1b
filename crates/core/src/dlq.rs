//! Publishing a dead letter: the one way router and workers store an event they give up on, on
//! `hookyard.dlq.<handler>` or `hookyard.dlq.unrouted`, with the headers operators filter by.

use async_nats::{
    HeaderMap,
    jetstream::{self, context::PublishError},
};
use hookyard_proto::event::v1::DeadLetter;
use prost::Message as _;

use crate::envelope::{HEADER_EVENT_ID, HEADER_HANDLER, HEADER_REASON, NATS_MSG_ID};

/// JetStream did not store a dead letter (the caller keeps the message to try again).
#[derive(Debug, thiserror::Error)]
#[error("failed to publish to {subject}")]
pub struct PublishFailed {
    /// Subject published to.
    pub subject: String,
    #[source]
    pub source: PublishError,
}

/// Publishes `letter` on `subject` with `Nats-Msg-Id: msg_id` (so a retried dead-lettering is
/// stored once) and copies of its event id, handler and reason as headers, and waits until
/// JetStream has stored it.
pub async fn publish(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    letter: &DeadLetter,
) -> Result<(), PublishFailed> {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MSG_ID, msg_id);
    if let Some(event) = letter.event.as_ref().filter(|e| !e.id.is_empty()) {
        headers.insert(HEADER_EVENT_ID, event.id.as_str());
    }
    if !letter.handler.is_empty() {
        headers.insert(HEADER_HANDLER, letter.handler.as_str());
    }
    headers.insert(HEADER_REASON, letter.reason.as_str());
    crate::work::publish(js, subject, headers, letter.encode_to_vec().into()).await
}
