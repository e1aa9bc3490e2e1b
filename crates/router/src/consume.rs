//! The pull loop over the router consumer: bounded concurrency, explicit batches sized to free
//! capacity (so no message waits in a hidden client buffer), ack only after every outbound
//! publish is acknowledged, NAK with delay otherwise.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use hookyard_core::{envelope::NATS_MSG_ID, streams::Topology};
use hookyard_proto::event::v1::Envelope;
use prost::Message as _;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    Error, ROUTER_CONCURRENCY,
    publish::{self, REASON_BAD_EVENT, REASON_UNROUTED, Unroutable},
    report, retry_delay,
    route::{self, Decision},
    table::Table,
};

/// How long one pull request waits for messages. Short, so a shutdown waits little for the
/// open request to end.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Pause after a failed pull, so a NATS outage is not a busy loop.
const PULL_FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// What routing one message needs.
pub(crate) struct Context {
    pub table: Arc<Table>,
    pub js: jetstream::Context,
    pub topology: Topology,
}

/// Pulls and routes until `stop` is cancelled, then returns unstarted messages and waits for
/// in-flight ones (each finishes within the publish timeout).
pub(crate) async fn run(consumer: PullConsumer, ctx: Arc<Context>, stop: &CancellationToken) {
    let permits = Arc::new(Semaphore::new(ROUTER_CONCURRENCY));
    let mut tasks = JoinSet::new();
    'pull: loop {
        while tasks.try_join_next().is_some() {}
        let first = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let want = permits.available_permits() + 1;
        let batch = tokio::select! {
            batch = consumer.batch().max_messages(want).expires(PULL_EXPIRES).messages() => batch,
            () = stop.cancelled() => break,
        };
        let mut batch = match batch {
            Ok(b) => b,
            Err(error) => {
                warn!(error = %report(&error), "pull request failed");
                pause(stop).await;
                continue;
            }
        };
        let mut first = Some(first);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    return_unstarted(&mut batch).await;
                    break 'pull;
                }
                next = batch.next() => match next {
                    None => break,
                    Some(Err(error)) => {
                        warn!(error = %report(&*error), "pull failed");
                        pause(stop).await;
                        break;
                    }
                    Some(Ok(msg)) => {
                        let permit = match first.take() {
                            Some(p) => p,
                            // Never fails: the batch asks for no more than the free permits,
                            // and only this loop takes them.
                            None => match permits.clone().try_acquire_owned() {
                                Ok(p) => p,
                                Err(_) => {
                                    nak(&msg, None).await;
                                    continue;
                                }
                            },
                        };
                        let ctx = ctx.clone();
                        tasks.spawn(async move {
                            handle(&ctx, msg).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
    }
    if !tasks.is_empty() {
        info!(in_flight = tasks.len(), "waiting for in-flight events");
    }
    while tasks.join_next().await.is_some() {}
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(PULL_FAILURE_PAUSE) => {}
    }
}

/// NAKs (without delay) what the open pull request still delivers, so another replica takes it
/// now instead of after the ack wait.
async fn return_unstarted(batch: &mut jetstream::consumer::pull::Batch) {
    let drain = async {
        while let Some(next) = batch.next().await {
            if let Ok(msg) = next {
                nak(&msg, None).await;
            }
        }
    };
    let _ = tokio::time::timeout(PULL_EXPIRES + Duration::from_secs(1), drain).await;
}

async fn nak(msg: &jetstream::Message, delay: Option<Duration>) {
    if let Err(error) = msg.ack_with(AckKind::Nak(delay)).await {
        warn!(error = %report(&*error), "failed to nak, the event is redelivered after the ack wait");
    }
}

async fn handle(ctx: &Context, msg: jetstream::Message) {
    let (delivered, sequence) = msg
        .info()
        .map(|i| (i.delivered, i.stream_sequence))
        .unwrap_or((1, 0));
    match route_one(ctx, &msg, delivered, sequence).await {
        Ok(()) => {
            if let Err(error) = msg.double_ack().await {
                // The event is redelivered and republished; Nats-Msg-Id absorbs the copies.
                warn!(error = %report(&*error), sequence, "failed to ack routed event");
            }
        }
        Err(error) => {
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

async fn route_one(
    ctx: &Context,
    msg: &jetstream::Message,
    delivered: i64,
    sequence: u64,
) -> Result<(), Error> {
    let attempts = u32::try_from(delivered).unwrap_or(u32::MAX);
    let event = match Envelope::decode(msg.payload.as_ref()) {
        Ok(event) if !event.id.is_empty() => event,
        Ok(event) => {
            let error = "the envelope has no event id".to_owned();
            return bad_event(ctx, msg, Some(event), error, attempts, sequence).await;
        }
        Err(e) => {
            let error = format!("the payload is not an event envelope: {e}");
            return bad_event(ctx, msg, None, error, attempts, sequence).await;
        }
    };
    // The table is fixed for this attempt: a reload meanwhile applies to the next event.
    let integration = ctx.table.current();
    match route::decide(&integration, &event) {
        Decision::Handlers {
            event_type,
            handlers,
        } => {
            publish::work_items(&ctx.js, &ctx.topology, &event, &event_type, &handlers).await?;
            debug!(event_id = %event.id, source = %event.source, event_type, handlers = handlers.len(), "event routed");
            Ok(())
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
            publish::unroutable(&ctx.js, &ctx.topology, dead).await
        }
    }
}

/// Dead-letters a payload that is not a usable envelope, keeping its raw bytes as the body so
/// nothing is lost.
async fn bad_event(
    ctx: &Context,
    msg: &jetstream::Message,
    decoded: Option<Envelope>,
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
    let in_prefix = ctx.topology.in_subject("");
    let source = msg
        .subject
        .as_str()
        .strip_prefix(&in_prefix)
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
    warn!(sequence, source = %event.source, "undecodable event dead-lettered");
    let dead = Unroutable {
        event,
        event_type: String::new(),
        reason: REASON_BAD_EVENT,
        error,
        attempts,
        dedup_key,
    };
    publish::unroutable(&ctx.js, &ctx.topology, dead).await
}
