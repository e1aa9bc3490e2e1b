//! Routing what the router consumer delivers, through the shared pull loop
//! ([`hookyard_core::pull`]: bounded concurrency, explicit batches sized to free capacity): ack
//! only after every outbound publish is acknowledged, NAK with delay otherwise.

use std::sync::Arc;

use async_nats::jetstream::{self, consumer::PullConsumer};
use hookyard_core::{
    envelope::NATS_MSG_ID,
    pull::{self, nak},
    streams::Topology,
};
use hookyard_proto::event::v1::Envelope;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use crate::{
    Error, ROUTER_CONCURRENCY,
    batch::Batcher,
    metrics::Metrics,
    publish::{self, REASON_BAD_EVENT, REASON_GAVE_UP, REASON_UNROUTED, Unroutable},
    report, retry_delay,
    route::{self, Decision},
    table::Table,
};

/// What routing one message needs.
pub(crate) struct Context {
    pub table: Arc<Table>,
    pub metrics: Arc<Metrics>,
    pub js: jetstream::Context,
    pub topology: Topology,
    /// Stores work items in atomic batches.
    pub batcher: Batcher,
    /// Deliveries of one inbound message after which the router dead-letters it.
    pub max_deliver: u32,
}

/// Pulls and routes until `stop` is cancelled, then returns unstarted messages and waits for
/// in-flight ones (each finishes within the publish timeout).
pub(crate) async fn run(consumer: PullConsumer, ctx: Arc<Context>, stop: &CancellationToken) {
    let pull::Stopped {
        mut tasks,
        unstarted,
    } = pull::run(&consumer, ROUTER_CONCURRENCY, stop, None, |msg| {
        let ctx = ctx.clone();
        async move { handle(&ctx, msg).await }
    })
    .await;
    for msg in &unstarted {
        nak(msg, None).await;
    }
    if !tasks.is_empty() {
        info!(in_flight = tasks.len(), "waiting for in-flight events");
    }
    while tasks.join_next().await.is_some() {}
}

/// Routes one inbound message within its `route` span, continuing the trace ingress stored in
/// the message's headers.
async fn handle(ctx: &Context, msg: jetstream::Message) {
    let span = tracing::info_span!(
        "route",
        source = tracing::field::Empty,
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        attempt = tracing::field::Empty,
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    hookyard_core::trace::adopt(&span, hookyard_core::trace::from_nats(msg.headers.as_ref()));
    route_and_answer(ctx, msg).instrument(span).await;
}

async fn route_and_answer(ctx: &Context, msg: jetstream::Message) {
    let (delivered, sequence) = msg
        .info()
        .map(|i| (i.delivered, i.stream_sequence))
        .unwrap_or((1, 0));
    let source = ctx
        .topology
        .source_of_in_subject(msg.subject.as_str())
        .unwrap_or_default()
        .to_owned();
    let attempts = u32::try_from(delivered).unwrap_or(u32::MAX);
    let span = tracing::Span::current();
    span.record("source", source.as_str());
    span.record("attempt", attempts);
    // Past the bound, whatever happened to the earlier deliveries (a failure each time, or a
    // router that died on this message before it could answer) is not tried again.
    let routed = if attempts > ctx.max_deliver {
        let why = format!(
            "delivered {attempts} times without being routed: the router failed or stopped on it each time"
        );
        give_up(ctx, &msg, why, attempts, sequence).await
    } else {
        match route_one(ctx, &msg, attempts, sequence).await {
            Err(error) if attempts >= ctx.max_deliver => {
                let why = format!("routing failed {attempts} times, last: {}", report(&error));
                give_up(ctx, &msg, why, attempts, sequence).await
            }
            routed => routed,
        }
    };
    span.record("outcome", routed.as_ref().map_or("retry", |o| *o));
    match routed {
        Ok(outcome) => {
            ctx.metrics.event(&source, outcome);
            if let Err(error) = msg.double_ack().await {
                // The event is redelivered and republished; Nats-Msg-Id absorbs the copies.
                warn!(error = %report(&*error), sequence, "failed to ack routed event");
            }
        }
        Err(error) => {
            ctx.metrics.event(&source, "retry");
            let delay = retry_delay(delivered);
            warn!(
                error = %report(&error),
                sequence,
                attempt = delivered,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "routing failed, retrying"
            );
            nak(&msg, Some(delay)).await;
        }
    }
}

/// Dead-letters an event the router could not route within `max_deliver` deliveries, with
/// why, so it stops taking a share of the router's attempts; `hookyard dlq replay --handler
/// unrouted` routes it again once the cause is fixed.
async fn give_up(
    ctx: &Context,
    msg: &jetstream::Message,
    why: String,
    attempts: u32,
    sequence: u64,
) -> Result<&'static str, Error> {
    let event = Envelope::decode(msg.payload.as_ref()).ok();
    warn!(sequence, attempts, error = %why, "router gave up on an event, dead-lettered");
    dead_letter(ctx, msg, event, REASON_GAVE_UP, why, attempts, sequence)
        .await
        .map(|()| "gave_up")
}

async fn route_one(
    ctx: &Context,
    msg: &jetstream::Message,
    attempts: u32,
    sequence: u64,
) -> Result<&'static str, Error> {
    let event = match Envelope::decode(msg.payload.as_ref()) {
        Ok(event) if !event.id.is_empty() => event,
        Ok(event) => {
            let error = "the envelope has no event id".to_owned();
            return dead_letter(
                ctx,
                msg,
                Some(event),
                REASON_BAD_EVENT,
                error,
                attempts,
                sequence,
            )
            .await
            .map(|()| "bad_event");
        }
        Err(e) => {
            let error = format!("the payload is not an event envelope: {e}");
            return dead_letter(ctx, msg, None, REASON_BAD_EVENT, error, attempts, sequence)
                .await
                .map(|()| "bad_event");
        }
    };
    tracing::Span::current().record("event_id", event.id.as_str());
    // The table is fixed for this attempt: a reload meanwhile applies to the next event.
    let integration = ctx.table.current();
    match route::decide(&integration, &event) {
        Decision::Handlers {
            event_type,
            handlers,
        } => {
            tracing::Span::current().record("event_type", event_type.as_str());
            let stored = publish::work_items(&ctx.batcher, &event, &event_type, &handlers).await?;
            debug!(event_id = %event.id, source = %event.source, event_type, handlers = handlers.len(), "event routed");
            for (handler, stored) in handlers.iter().zip(stored) {
                ctx.metrics.work(handler, stored);
            }
            Ok("routed")
        }
        Decision::Unrouted { event_type, why } => {
            info!(event_id = %event.id, source = %event.source, event_type, "event unrouted");
            let dead = Unroutable {
                dedup_key: event.id.clone(),
                event,
                event_type,
                reason: REASON_UNROUTED,
                error: report(&why),
                attempts,
            };
            publish::unroutable(&ctx.js, &ctx.topology, dead, sequence)
                .await
                .map(|()| "unrouted")
        }
    }
}

/// Dead-letters an event on the unrouted subject with `reason`; a payload that is not a usable
/// envelope keeps its raw bytes as the body so nothing is lost.
async fn dead_letter(
    ctx: &Context,
    msg: &jetstream::Message,
    decoded: Option<Envelope>,
    reason: &'static str,
    error: String,
    attempts: u32,
    sequence: u64,
) -> Result<(), Error> {
    let msg_id = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(NATS_MSG_ID))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let source = ctx
        .topology
        .source_of_in_subject(msg.subject.as_str())
        .unwrap_or_default()
        .to_owned();
    let event = decoded.unwrap_or_else(|| Envelope {
        id: msg_id.clone(),
        source,
        body: msg.payload.to_vec(),
        ..Default::default()
    });
    let dedup_key = if event.id.is_empty() {
        format!("{}-seq-{sequence}", ctx.topology.in_stream())
    } else {
        event.id.clone()
    };
    if reason == REASON_BAD_EVENT {
        warn!(sequence, source = %event.source, "undecodable event dead-lettered");
    }
    let dead = Unroutable {
        event,
        event_type: String::new(),
        reason,
        error,
        attempts,
        dedup_key,
    };
    publish::unroutable(&ctx.js, &ctx.topology, dead, sequence).await
}
