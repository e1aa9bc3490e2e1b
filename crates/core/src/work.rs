//! Storing a work item for a handler: on its subject of `HOOKYARD_WORK`, or, when that handler
//! already has [`StreamLimits::work_max_per_handler`](crate::streams::StreamLimits) items
//! there, on its subject of `HOOKYARD_WAIT`, from where the router moves it once the handler's
//! workers have made room (docs/architecture.md, "One handler cannot stall the others").
//!
//! The cap is JetStream's own (`max_messages_per_subject` with `discard_new_per_subject`), so
//! it holds across router replicas without any coordination; the refusal is the signal.

use async_nats::{
    HeaderMap,
    jetstream::{
        self, ErrorCode,
        context::{PublishError, PublishErrorKind},
    },
};
use bytes::Bytes;

use crate::{dlq::PublishFailed, streams::Topology};

/// Where a work item was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// In the work queue, for the handler's workers.
    Work,
    /// In the wait stream: the handler is at its cap.
    Waiting,
}

/// Stores one work item for `handler` and waits for JetStream's acknowledgement: in the work
/// queue, or in the wait stream when the handler is at its cap there. The headers carry the
/// item's `Nats-Msg-Id`, which both streams dedup on.
pub async fn store(
    js: &jetstream::Context,
    topology: &Topology,
    handler: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Stored, PublishFailed> {
    match publish(
        js,
        topology.work_subject(handler),
        headers.clone(),
        payload.clone(),
    )
    .await
    {
        Ok(()) => Ok(Stored::Work),
        Err(e) if at_cap(&e.source) => {
            publish(js, topology.wait_subject(handler), headers, payload)
                .await
                .map(|()| Stored::Waiting)
        }
        Err(e) => Err(e),
    }
}

/// Publishes to `subject` and waits for JetStream's acknowledgement: the one way services
/// store a message they must know is stored (work items, dead letters, dedup and audit records).
pub async fn publish(
    js: &jetstream::Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<(), PublishFailed> {
    let ack = match js
        .publish_with_headers(subject.clone(), headers, payload)
        .await
    {
        Ok(ack) => ack,
        Err(source) => return Err(PublishFailed { subject, source }),
    };
    ack.await
        .map(|_| ())
        .map_err(|source| PublishFailed { subject, source })
}

/// Whether JetStream refused a publish because its subject holds the stream's
/// `max_messages_per_subject` already (with `discard_new_per_subject`).
pub fn at_cap(error: &PublishError) -> bool {
    if error.kind() != PublishErrorKind::Other {
        return false;
    }
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|e| {
            e.error_code() == ErrorCode::STREAM_STORE_FAILED
                && e.to_string().contains("maximum messages per subject")
        })
}
