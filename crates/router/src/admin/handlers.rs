//! Handlers as operators see them: their consumer's lag and pending work, dead letters, last
//! error and pause state; pausing and resuming them.
//!
//! A pause is JetStream's consumer pause (`pause_until`, nats-server 2.11+) on the durable
//! consumer every replica of the handler's workers shares: the server stops delivering, new work
//! items keep arriving in `HOOKYARD_WORK` and wait there (only what is done is purged), and
//! in-flight deliveries finish as usual. Resuming delivers what waited. The pause lives in the
//! consumer on the server, so it holds for every replica and across worker restarts.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{ConsumerErrorKind, Stream},
};
use futures::StreamExt as _;
use hookyard_proto::{admin::v1::HandlerStatus, event::v1::DeliveryOutcome};
use prost::Message as _;

use super::{
    Context, Error,
    scan::{Scan, Start},
};

/// A pause without an end: until resumed.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Whether a pause ending at `paused_until_ms` is one without an end (paused until resumed).
pub(crate) fn until_resumed(paused_until_ms: i64) -> bool {
    let left = paused_until_ms.saturating_sub(hookyard_core::envelope::now_ms());
    u128::try_from(left).is_ok_and(|left| left > FOREVER.as_millis() / 2)
}

/// Every handler of the integration file, by name.
pub(crate) async fn list(ctx: &Context) -> Result<Vec<HandlerStatus>, Error> {
    let names: Vec<String> = ctx.table.current().handlers.keys().cloned().collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(status(ctx, &name).await?);
    }
    Ok(out)
}

async fn work_stream(ctx: &Context) -> Result<Stream, Error> {
    ctx.js
        .get_stream(ctx.topology.work_stream())
        .await
        .map_err(|e| Error::nats("read the work stream")(e.into()))
}

fn known(ctx: &Context, name: &str) -> Result<(), Error> {
    if ctx.table.current().handlers.contains_key(name) {
        Ok(())
    } else {
        Err(Error::NotFound {
            kind: "handler",
            id: name.to_owned(),
        })
    }
}

/// One handler's state.
pub(crate) async fn status(ctx: &Context, name: &str) -> Result<HandlerStatus, Error> {
    let mut status = HandlerStatus {
        name: name.to_owned(),
        ..Default::default()
    };
    let stream = work_stream(ctx).await?;
    match stream
        .consumer_info(ctx.topology.handler_consumer(name))
        .await
    {
        Ok(info) => {
            status.consumer = true;
            status.lag = info.num_pending;
            status.pending = info.num_ack_pending as u64;
            status.redelivered = info.num_redelivered as u64;
            status.paused = info.paused;
            if let Some(left) = info.pause_remaining.filter(|_| info.paused) {
                status.paused_until_ms = hookyard_core::envelope::now_ms()
                    .saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX));
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::nats("read the handler's consumer")(e.into())),
    }
    status.dead_letters = dead_letters(ctx, name).await?;
    status.waiting = waiting(ctx, name).await?;
    let minute_ago = hookyard_core::envelope::now_ms().saturating_sub(60_000);
    status.deliveries_last_minute = recorded_since(ctx, name, &[None], minute_ago).await?;
    status.failures_last_minute =
        recorded_since(ctx, name, &FAILURES.map(Some), minute_ago).await?;
    if let Some(last) = last_error(ctx, name).await? {
        status.last_error = last.error;
        status.last_error_at_ms = last.at_ms;
    }
    Ok(status)
}

fn is_not_found(error: &jetstream::context::ConsumerInfoError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::ConsumerInfoErrorKind::NotFound
    )
}

/// Dead letters kept for the handler: what a consumer over its subject would read.
async fn dead_letters(ctx: &Context, name: &str) -> Result<u64, Error> {
    let subject = ctx.topology.dlq_subject(name);
    let dlq = ctx.topology.dlq_stream();
    Ok(Scan::open(&ctx.js, &dlq, vec![subject], Start::All, true)
        .await?
        .len())
}

/// Work items parked for the handler because it is at its cap in the work queue. Counted from
/// the stream's per-subject state: a work-queue stream allows no second consumer on a subject
/// the handler's mover reads.
async fn waiting(ctx: &Context, name: &str) -> Result<u64, Error> {
    let failed = |e: async_nats::Error| Error::nats("read the wait stream")(e);
    let stream = ctx
        .js
        .get_stream_no_info(ctx.topology.wait_stream())
        .await
        .map_err(|e| failed(e.into()))?;
    let mut subjects = stream
        .info_with_subjects(ctx.topology.wait_subject(name))
        .await
        .map_err(|e| failed(e.into()))?;
    let mut waiting = 0;
    while let Some(subject) = subjects.next().await {
        waiting += subject.map_err(|e| failed(e.into()))?.1 as u64;
    }
    Ok(waiting)
}

/// The outcomes of a failed delivery.
const FAILURES: [&str; 2] = ["retry", "dead_letter"];

/// Delivery outcomes (any, when `None`) the handler's workers recorded since `since_ms`: the
/// count is the server's, from a headers-only consumer's pending messages, so nothing is read.
async fn recorded_since(
    ctx: &Context,
    name: &str,
    outcomes: &[Option<&str>],
    since_ms: i64,
) -> Result<u64, Error> {
    let filters = outcomes
        .iter()
        .map(|outcome| ctx.topology.audit_worker_filter(Some(name), *outcome, None))
        .collect();
    let audit = ctx.topology.audit_stream();
    Ok(
        Scan::open(&ctx.js, &audit, filters, Start::Time(since_ms), true)
            .await?
            .len(),
    )
}

/// The latest failed delivery the handler's workers recorded.
async fn last_error(ctx: &Context, name: &str) -> Result<Option<DeliveryOutcome>, Error> {
    let filters = FAILURES
        .map(|outcome| {
            ctx.topology
                .audit_worker_filter(Some(name), Some(outcome), None)
        })
        .to_vec();
    let mut scan = Scan::open(
        &ctx.js,
        &ctx.topology.audit_stream(),
        filters,
        Start::Last,
        false,
    )
    .await?;
    Ok(scan
        .next()
        .await?
        .and_then(|msg| DeliveryOutcome::decode(msg.payload.as_ref()).ok()))
}

/// Pauses the handler for `duration` (until resumed when `None`).
pub(crate) async fn pause(
    ctx: &Context,
    name: &str,
    duration: Option<Duration>,
) -> Result<HandlerStatus, Error> {
    known(ctx, name)?;
    let until = async_nats::datetime::add_std_duration(
        async_nats::datetime::now(),
        duration.unwrap_or(FOREVER),
    )
    .map_err(|_| Error::Invalid("the pause is too long"))?;
    let stream = work_stream(ctx).await?;
    stream
        .pause_consumer(&ctx.topology.handler_consumer(name), until)
        .await
        .map_err(|e| consumer_error(name, e))?;
    tracing::info!(handler = name, "handler paused");
    status(ctx, name).await
}

/// Resumes the handler.
pub(crate) async fn resume(ctx: &Context, name: &str) -> Result<HandlerStatus, Error> {
    known(ctx, name)?;
    let stream = work_stream(ctx).await?;
    stream
        .resume_consumer(&ctx.topology.handler_consumer(name))
        .await
        .map_err(|e| consumer_error(name, e))?;
    tracing::info!(handler = name, "handler resumed");
    status(ctx, name).await
}

fn consumer_error(name: &str, error: jetstream::stream::ConsumerError) -> Error {
    match error.kind() {
        ConsumerErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
        {
            Error::Precondition(format!(
                "handler {name:?} has no consumer yet: start its worker once"
            ))
        }
        _ => Error::nats("pause or resume the handler")(error.into()),
    }
}
