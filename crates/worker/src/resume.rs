//! Where a work item's pipeline stands, kept in the `HOOKYARD_STEPS` bucket under
//! `<handler>.<work stream sequence>`, so a retry continues at the step that failed: steps
//! that succeeded are neither run again nor lose their results.
//!
//! The entry is written after each step with a side effect (a partner call, a program, a
//! published event, a reply) that has steps after it, read only on a redelivery, and removed
//! when the delivery ends (acknowledged or dead-lettered; the bucket's age limit removes what a
//! failed removal leaves). A failed write is logged and the pipeline goes on: a later retry then
//! repeats the step, which its idempotency key (or the stream's dedup, for a publish) covers —
//! at least once, as before.

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::warn;

use crate::{dispatch::HandlerContext, report};

/// The steps a work item has completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Index of the first step not yet completed.
    pub next: usize,
    /// `$steps`: results by step name (or index).
    pub steps: Map<String, Value>,
    /// The last `http` step's answer (`$event.response`).
    pub response: Option<Value>,
}

fn key(ctx: &HandlerContext, msg: &jetstream::Message) -> Option<String> {
    let sequence = msg.info().ok()?.stream_sequence;
    Some(ctx.topology.steps_key(&ctx.name, sequence))
}

/// The progress of `msg`'s earlier deliveries: empty on a first delivery (nothing to read)
/// and when none was kept. A failed read starts from the first step (logged).
pub(crate) async fn load(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    deliveries: u32,
) -> Progress {
    if deliveries <= 1 || !ctx.resumes {
        return Progress::default();
    }
    let Some(key) = key(ctx, msg) else {
        return Progress::default();
    };
    match ctx.steps.get(&key).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(error = %e, "unreadable step progress, starting from the first step");
            Progress::default()
        }),
        Ok(None) => Progress::default(),
        Err(e) => {
            warn!(error = %report(&e), "failed to read step progress, starting from the first step");
            Progress::default()
        }
    }
}

/// Keeps `progress` for the next delivery of `msg`.
pub(crate) async fn save(ctx: &HandlerContext, msg: &jetstream::Message, progress: &Progress) {
    let Some(key) = key(ctx, msg) else {
        return;
    };
    let bytes = match serde_json::to_vec(progress) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(error = %e, "failed to encode step progress");
            return;
        }
    };
    if let Err(e) = ctx.steps.put(&key, bytes.into()).await {
        warn!(error = %report(&e), step = progress.next, "failed to keep step progress; a retry would repeat the completed steps");
    }
}

/// How long the marker a removal leaves stays in the bucket.
const MARKER_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the progress of `msg` once its delivery has ended.
pub(crate) async fn forget(ctx: &HandlerContext, msg: &jetstream::Message) {
    if let Some(key) = key(ctx, msg)
        && let Err(e) = ctx.steps.purge_with_ttl(&key, MARKER_TTL).await
    {
        warn!(error = %report(&e), "failed to remove step progress");
    }
}
