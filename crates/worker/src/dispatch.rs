//! One delivery of one work item: run the handler's steps through egress while telling
//! JetStream the work is in progress, then acknowledge, NAK with delay, or dead-letter.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind};
use hookyard_core::{
    Integration,
    config::Handler,
    envelope::{self, HEADER_EVENT_ID, NATS_MSG_ID},
    pull::nak,
    streams::Topology,
};
use hookyard_proto::{
    egress::v1::egress_service_client::EgressServiceClient,
    event::v1::{DeadLetter, Envelope, WorkItem},
};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use crate::{
    Error,
    outcome::{Attempt, Failure, Reason, Verdict, backoff_delay, verdict},
    report,
};

/// Everything one handler's deliveries need.
pub(crate) struct HandlerContext {
    pub name: String,
    pub handler: Handler,
    pub integration: Arc<Integration>,
    pub js: jetstream::Context,
    /// For `reply` steps, which publish on core NATS.
    pub nats: async_nats::Client,
    pub topology: Topology,
    pub egress: EgressServiceClient<tonic::transport::Channel>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where the outcome of every delivery is recorded (best effort).
    pub records: Arc<crate::record::Recorder>,
    /// The `HOOKYARD_RETURNS` bucket (see [`crate::returns`]).
    pub returns: async_nats::jetstream::kv::Store,
    /// The `HOOKYARD_STEPS` bucket (see [`crate::resume`]).
    pub steps: async_nats::jetstream::kv::Store,
    /// True when a step with a side effect has steps after it: progress is then kept.
    pub resumes: bool,
    /// True when done items are purged from the work stream (see [`crate::purge`]), false for
    /// a work queue, where each acknowledgement removes its item.
    pub purges: bool,
    /// What this process acknowledged and has not yet seen purged.
    pub acked: crate::purge::Acked,
    /// The programs of the handler's subprocess steps.
    pub programs: Arc<crate::program::Programs>,
}

/// Handles one delivery. When `abort` is cancelled (the shutdown grace ran out) the attempt is
/// dropped and the message returned to the stream with a plain NAK.
/// Handles one delivery within its `deliver` span, continuing the trace the router stored in
/// the work item's headers.
pub(crate) async fn handle(
    ctx: &HandlerContext,
    msg: jetstream::Message,
    abort: &CancellationToken,
) {
    let span = tracing::info_span!(
        "deliver",
        handler = %ctx.name,
        event_id = header(&msg, HEADER_EVENT_ID).unwrap_or_default(),
        attempt = tracing::field::Empty,
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    hookyard_core::trace::adopt(&span, hookyard_core::trace::from_nats(msg.headers.as_ref()));
    deliver(ctx, msg, abort).instrument(span).await;
}

async fn deliver(ctx: &HandlerContext, msg: jetstream::Message, abort: &CancellationToken) {
    let deliveries = msg
        .info()
        .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX))
        .unwrap_or(1)
        .max(1);
    // The attempt this delivery is: deliveries handed back unstarted at a shutdown do not count.
    let returned = crate::returns::returned(ctx, &msg, deliveries).await;
    let delivered = deliveries - returned;
    tracing::Span::current().record("attempt", delivered);
    let Some((attempt, item)) = attempt_of(ctx, &msg, delivered, deliveries, abort).await else {
        return;
    };
    let verdict = verdict(
        &attempt,
        delivered,
        ctx.handler.max_deliver,
        &ctx.handler.backoff,
    );
    tracing::Span::current().record("outcome", verdict.label());
    ctx.records
        .record(&ctx.name, item.as_ref(), delivered, &attempt, &verdict);
    settle(ctx, &msg, item, attempt, delivered, returned, verdict).await;
}

/// Decodes the work item and makes this delivery's attempt; `None` when the shutdown grace ran
/// out during it (the message is then returned already).
async fn attempt_of(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    delivered: u32,
    deliveries: u32,
    abort: &CancellationToken,
) -> Option<(Attempt, Option<WorkItem>)> {
    let max_deliver = ctx.handler.max_deliver;
    Some(match WorkItem::decode(msg.payload.as_ref()) {
        Err(e) => (
            failed(
                Failure::BadEvent,
                0,
                format!("the payload is not a work item: {e}"),
            ),
            None,
        ),
        Ok(item) if item.event.is_none() => (
            failed(
                Failure::BadEvent,
                0,
                "the work item has no event".to_owned(),
            ),
            Some(item),
        ),
        // The worker that had the last allowed attempt stopped without an outcome (crashed,
        // killed, or its grace ran out): dead-lettered now, without calling the partner again.
        Ok(item) if delivered > max_deliver => (
            failed(
                Failure::Retryable,
                0,
                format!(
                    "delivered {delivered} times, the last allowed attempts ended without an outcome"
                ),
            ),
            Some(item),
        ),
        Ok(item) => match timed_attempt(ctx, msg, &item, deliveries, abort).await {
            Some(attempt) => (attempt, Some(item)),
            None => {
                info!(
                    attempt = delivered,
                    "shutdown grace ran out, returning the event"
                );
                nak(msg, None).await;
                return None;
            }
        },
    })
}

/// Carries out `verdict` on the delivery: acknowledge, NAK with a delay (a wait counted as no
/// attempt), or dead-letter and acknowledge.
async fn settle(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    item: Option<WorkItem>,
    attempt: Attempt,
    delivered: u32,
    returned: u32,
    verdict: Verdict,
) {
    let event_id = item
        .as_ref()
        .and_then(|i| i.event.as_ref())
        .map(|e| e.id.as_str())
        .unwrap_or_default()
        .to_owned();
    ctx.metrics.delivery(&ctx.name, verdict.label());
    match verdict {
        Verdict::Ack => {
            end_delivery(ctx, msg, returned).await;
            // One line per handled event: operators (and the compose test) count deliveries per replica.
            info!(event_id, attempt = delivered, "event handled");
            ack(ctx, msg).await;
        }
        Verdict::Retry(delay) => {
            warn!(
                event_id,
                attempt = delivered,
                status = status_of(&attempt),
                error = error_of(&attempt),
                retry_in_ms = millis(delay),
                "partner call failed, retrying"
            );
            nak(msg, Some(delay)).await;
        }
        Verdict::Wait { delay, reason } => {
            info!(
                event_id,
                attempt = delivered,
                wait = reason.label(),
                error = error_of(&attempt),
                retry_in_ms = millis(delay),
                "no partner call possible, waiting without spending a retry"
            );
            crate::returns::hand_back(ctx, msg, Some(delay)).await;
        }
        Verdict::DeadLetter(reason) => {
            warn!(
                event_id,
                attempt = delivered,
                status = status_of(&attempt),
                reason = reason.as_str(),
                error = error_of(&attempt),
                "dead-lettering event"
            );
            let letter = Letter {
                item,
                reason,
                attempt,
                delivered,
            };
            give_up(ctx, msg, letter, returned, &event_id).await;
        }
    }
}

/// What a dead letter is made of.
struct Letter {
    item: Option<WorkItem>,
    reason: Reason,
    attempt: Attempt,
    delivered: u32,
}

/// Dead-letters the delivery, then acknowledges it; if the dead letter is not stored, the
/// message is NAKed with the backoff instead, so it is never lost: it comes back to be
/// dead-lettered.
async fn give_up(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    letter: Letter,
    returned: u32,
    event_id: &str,
) {
    let delivered = letter.delivered;
    match dead_letter(ctx, msg, letter).await {
        Ok(()) => {
            end_delivery(ctx, msg, returned).await;
            ack(ctx, msg).await;
        }
        Err(error) => {
            let delay = backoff_delay(&ctx.handler.backoff, delivered);
            warn!(event_id, error = %report(&error), retry_in_ms = millis(delay), "failed to dead-letter, retrying");
            nak(msg, Some(delay)).await;
        }
    }
}

/// Removes what was kept for the message's deliveries (returned count, step progress), once
/// its delivery has ended.
async fn end_delivery(ctx: &HandlerContext, msg: &jetstream::Message, returned: u32) {
    if returned > 0 {
        crate::returns::forget(ctx, msg).await;
    }
    if ctx.resumes {
        crate::resume::forget(ctx, msg).await;
    }
}

fn failed(kind: Failure, status: u32, error: String) -> Attempt {
    Attempt::Failed {
        kind,
        status,
        error,
    }
}

fn status_of(attempt: &Attempt) -> u32 {
    match attempt {
        Attempt::Succeeded => 0,
        Attempt::Failed { status, .. } => *status,
    }
}

fn error_of(attempt: &Attempt) -> &str {
    match attempt {
        Attempt::Succeeded => "",
        Attempt::Failed { error, .. } => error,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// [`attempt_with_progress`], timed for the metrics.
async fn timed_attempt(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    item: &WorkItem,
    deliveries: u32,
    abort: &CancellationToken,
) -> Option<Attempt> {
    let started = std::time::Instant::now();
    let progress = crate::resume::load(ctx, msg, deliveries).await;
    let attempt = attempt_with_progress(ctx, msg, item, progress, abort).await;
    ctx.metrics
        .attempt(&ctx.name, started.elapsed().as_secs_f64());
    attempt
}

/// Runs the steps from `progress` on, sending a progress ack every half ack wait so a long
/// call is not redelivered to another worker meanwhile. `None` when aborted.
async fn attempt_with_progress(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    item: &WorkItem,
    progress: crate::resume::Progress,
    abort: &CancellationToken,
) -> Option<Attempt> {
    let work = crate::pipeline::run(ctx, msg, item, progress);
    tokio::pin!(work);
    let period = (ctx.handler.ack_wait / 2).max(Duration::from_millis(100));
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            biased;
            () = abort.cancelled() => return None,
            attempt = &mut work => return Some(attempt),
            _ = progress.tick() => {
                if let Err(error) = msg.ack_with(AckKind::Progress).await {
                    warn!(error = %report(&*error), "failed to send progress");
                }
            }
        }
    }
}

async fn ack(ctx: &HandlerContext, msg: &jetstream::Message) {
    // A double ack: the server confirms it, so an outcome reported done is not redelivered,
    // and only an item the server counts as done is purged.
    match msg.double_ack().await {
        Ok(()) => {
            if ctx.purges
                && let Ok(info) = msg.info()
            {
                ctx.acked.note(info.stream_sequence);
            }
        }
        Err(error) => {
            warn!(error = %report(&*error), "failed to ack, the event may be redelivered");
        }
    }
}

fn header<'a>(msg: &'a jetstream::Message, name: &str) -> Option<&'a str> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

/// `Nats-Msg-Id` of the dead letter of a work message.
pub(crate) fn dlq_msg_id(work_msg_id: &str) -> String {
    format!("{work_msg_id}:dlq")
}

/// Publishes the dead letter and waits for JetStream to acknowledge it.
async fn dead_letter(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    letter: Letter,
) -> Result<(), Error> {
    let Letter {
        item,
        reason,
        attempt,
        delivered,
    } = letter;
    let (event, event_type) = match item {
        Some(item) => (item.event, item.event_type),
        // Keep the raw bytes, so nothing is lost even when they cannot be read.
        None => (
            Some(Envelope {
                id: header(msg, HEADER_EVENT_ID).unwrap_or_default().to_owned(),
                body: msg.payload.to_vec(),
                ..Default::default()
            }),
            String::new(),
        ),
    };
    let event_id = event.as_ref().map(|e| e.id.clone()).unwrap_or_default();
    let work_id = match header(msg, NATS_MSG_ID) {
        Some(id) => id.to_owned(),
        None if !event_id.is_empty() => envelope::work_msg_id(&event_id, &ctx.name),
        None => {
            let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            format!("{}-seq-{sequence}", ctx.topology.work_stream())
        }
    };
    let (status, error) = match attempt {
        Attempt::Succeeded => (0, String::new()),
        Attempt::Failed { status, error, .. } => (status, error),
    };
    let letter = DeadLetter {
        event,
        handler: ctx.name.clone(),
        event_type,
        reason: reason.as_str().to_owned(),
        error,
        attempts: delivered,
        last_status: status,
        failed_at_ms: envelope::now_ms(),
    };
    let subject = ctx.topology.dlq_subject(&ctx.name);
    hookyard_core::dlq::publish(&ctx.js, subject, &dlq_msg_id(&work_id), &letter)
        .await
        .map_err(|e| Error::Publish {
            subject: e.subject,
            source: e.source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlq_msg_id_extends_the_work_msg_id() {
        assert_eq!(dlq_msg_id("evt_1:orders"), "evt_1:orders:dlq");
    }
}
