//! The `publish` step: a new event, stored in `HOOKYARD_IN` and routed like a webhook from the
//! same source, so one handler can start others.
//!
//! Its id derives from the work item's base key (`<event id>:<handler>`, or the replay's),
//! and the step's key, so a redelivered work item emits the same id. It is stored under its own
//! subject `hookyard.in.<source>.<event id>` with `Nats-Expected-Last-Subject-Sequence: 0`: the
//! stream refuses it again for as long as it keeps it, however long after the first attempt a
//! retry comes, and `Nats-Msg-Id` collapses a publish retried within the duplicate window.

use async_nats::{
    HeaderMap,
    header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
    jetstream::{self, context::PublishErrorKind},
};
use hookyard_core::{
    config::PublishStep,
    envelope::{self, HEADER_EVENT_ID, HEADER_SOURCE, NATS_MSG_ID},
    streams::Topology,
};
use hookyard_proto::event::v1::{Envelope, Header};
use prost::Message as _;

use crate::call::{BuildError, Scope};

/// Why a publish step failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An expression failed or gave no type (permanent).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The event type expression gave no value (permanent).
    #[error("the event_type expression gave no value")]
    NoType,
    /// JetStream did not store the event (retryable).
    #[error("failed to store the published event on {subject}: {kind:?}")]
    Store {
        /// The subject.
        subject: String,
        /// What JetStream answered.
        kind: PublishErrorKind,
    },
}

/// The event a publish step emits, with its id derived from the work item and `step_key`.
pub fn build(
    step: &PublishStep,
    step_key: &str,
    scope: Scope<'_>,
) -> Result<Envelope, PublishError> {
    let Scope { event, item, .. } = scope;
    let input = scope.input();
    let expr = |field: &str| {
        let field = field.to_owned();
        move |source| BuildError::Expr { field, source }
    };
    let event_type = step
        .event_type
        .eval_string(&input)
        .map_err(expr("event_type"))?
        .filter(|t| !t.is_empty())
        .ok_or(PublishError::NoType)?;
    let (body, computed) = match &step.body {
        Some(body) => (body.eval_body(&input).map_err(expr("body"))?, body.is_jq()),
        None => (event.body.clone(), false),
    };
    let base = crate::call::item_idempotency_key(event, item, 0);
    let dedup_key = format!("{base}:{step_key}");
    let mut headers = Vec::new();
    // A jq body is JSON; the event's own body keeps its Content-Type.
    if computed {
        headers.push(Header {
            name: "content-type".to_owned(),
            value: b"application/json".to_vec(),
        });
    } else if let Some(h) = event
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
    {
        headers.push(h.clone());
    }
    Ok(Envelope {
        id: envelope::event_id(&event.source, &dedup_key),
        source: event.source.clone(),
        received_at_ms: envelope::now_ms(),
        method: "POST".to_owned(),
        headers,
        body,
        dedup_key,
        event_type,
        parent_id: event.id.clone(),
        ..Default::default()
    })
}

/// Stores `event`; `Ok` also when the stream has it already (an earlier attempt stored it).
pub async fn store(
    js: &jetstream::Context,
    topology: &Topology,
    event: &Envelope,
) -> Result<(), PublishError> {
    let subject = topology.in_event_subject(&event.source, &event.id);
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MSG_ID, event.id.as_str());
    headers.insert(HEADER_EVENT_ID, event.id.as_str());
    headers.insert(HEADER_SOURCE, event.source.as_str());
    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
    let failed = |kind| PublishError::Store {
        subject: subject.clone(),
        kind,
    };
    let ack = js
        .publish_with_headers(subject.clone(), headers, event.encode_to_vec().into())
        .await
        .map_err(|e| failed(e.kind()))?;
    match ack.await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(()),
        Err(e) => Err(failed(e.kind())),
    }
}
