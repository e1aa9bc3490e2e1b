//! Moving parked work items from `HOOKYARD_WAIT` to the work queue, one mover per handler.
//!
//! A handler at its cap in `HOOKYARD_WORK` gets its new items parked on
//! `hookyard.wait.<handler>` ([`hookyard_core::work::store`]), so the router acknowledges the
//! event and goes on routing everyone else's. Each handler's mover reads its own subject of the
//! wait stream through a durable consumer (`wait-<handler>`, shared by router replicas) and
//! stores each item in the work queue once the handler's workers have made room; an item that
//! still does not fit is held, its delivery kept alive, and tried again shortly — waiting for
//! room is not a failure, so it spends nothing. Only that handler's mover waits.
//!
//! The movers follow the route table: one starts for each handler a reload adds and stops for
//! each it removes (its parked items stay in the stream until the handler is back).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, PullConsumer, pull},
};
use hookyard_core::{pull::nak, retry, streams::Topology, work};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{metrics::Metrics, report, table::Table};

/// Items one mover holds at once.
const MOVER_CONCURRENCY: usize = 8;
/// Pause before trying again to store an item its handler had no room for.
const ROOM_RETRY: Duration = Duration::from_millis(500);
/// How often the movers are matched to the route table, and each reports its backlog.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a mover may hold an item before JetStream redelivers it; the hold renews it.
const MOVER_ACK_WAIT: Duration = Duration::from_secs(30);

/// What the movers need.
pub(crate) struct Context {
    pub js: jetstream::Context,
    pub topology: Topology,
    pub metrics: Arc<Metrics>,
}

/// Runs one mover per handler of the current table until `stop` is cancelled.
pub(crate) async fn run(ctx: Arc<Context>, table: Arc<Table>, stop: CancellationToken) {
    let mut movers: BTreeMap<String, CancellationToken> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let integration = table.current();
        movers.retain(|handler, token| {
            let keep = integration.handlers.contains_key(handler);
            if !keep {
                token.cancel();
            }
            keep
        });
        for handler in integration.handlers.keys() {
            if !movers.contains_key(handler) {
                let token = stop.child_token();
                movers.insert(handler.clone(), token.clone());
                tasks.spawn(mover(ctx.clone(), handler.clone(), token));
            }
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Moves `handler`'s parked items until `stop` is cancelled.
async fn mover(ctx: Arc<Context>, handler: String, stop: CancellationToken) {
    let Some(consumer) = retry::until_ok(
        &stop,
        || bind(&ctx, &handler),
        |attempt, error| warn!(attempt, handler, error = %report(error), "wait consumer setup failed, retrying"),
    )
    .await
    else {
        return;
    };
    let moving = async {
        let stopped =
            hookyard_core::pull::run(&consumer, MOVER_CONCURRENCY, &stop, Some(&handler), |msg| {
                let (ctx, handler, stop) = (ctx.clone(), handler.clone(), stop.clone());
                async move { move_one(&ctx, &handler, msg, &stop).await }
            })
            .await;
        for msg in &stopped.unstarted {
            nak(msg, None).await;
        }
        let mut tasks = stopped.tasks;
        while tasks.join_next().await.is_some() {}
    };
    tokio::join!(moving, watch(&ctx, &handler, consumer.clone(), &stop));
}

async fn bind(
    ctx: &Context,
    handler: &str,
) -> Result<PullConsumer, jetstream::stream::ConsumerError> {
    ctx.js
        .create_consumer_on_stream(
            consumer_config(&ctx.topology, handler),
            ctx.topology.wait_stream(),
        )
        .await
}

/// The durable consumer of `handler`'s subject of the wait stream.
pub(crate) fn consumer_config(topology: &Topology, handler: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(topology.wait_consumer(handler)),
        description: Some(format!(
            "hookyard router: moves {handler}'s parked work items to the work queue"
        )),
        filter_subject: topology.wait_subject(handler),
        ack_policy: AckPolicy::Explicit,
        ack_wait: MOVER_ACK_WAIT,
        // Waiting for room never gives up: the item is the handler's work.
        max_deliver: -1,
        ..Default::default()
    }
}

/// Stores one parked item in the work queue, holding it while its handler has no room.
async fn move_one(ctx: &Context, handler: &str, msg: jetstream::Message, stop: &CancellationToken) {
    let headers = msg.headers.clone().unwrap_or_default();
    let subject = ctx.topology.work_subject(handler);
    loop {
        match work::publish(
            &ctx.js,
            subject.clone(),
            headers.clone(),
            msg.payload.clone(),
        )
        .await
        {
            Ok(()) => {
                ctx.metrics.moved(handler);
                if let Err(error) = msg.double_ack().await {
                    // Moved again on redelivery; the work queue's Nats-Msg-Id absorbs the copy.
                    warn!(handler, error = %report(&*error), "failed to ack a moved item");
                }
                return;
            }
            Err(e) if work::at_cap(&e.source) => {
                // Keeps the delivery alive so no other replica takes it meanwhile.
                let _ = msg.ack_with(AckKind::Progress).await;
                tokio::select! {
                    () = stop.cancelled() => {
                        nak(&msg, None).await;
                        return;
                    }
                    () = tokio::time::sleep(ROOM_RETRY) => {}
                }
            }
            Err(error) => {
                warn!(handler, error = %report(&error), "moving a parked item failed, retrying");
                nak(&msg, Some(ROOM_RETRY)).await;
                return;
            }
        }
    }
}

/// Reports `handler`'s parked items (the gauge, and a log line when some start or stop
/// waiting) until `stop` is cancelled.
async fn watch(ctx: &Context, handler: &str, mut consumer: PullConsumer, stop: &CancellationToken) {
    let mut was_waiting = false;
    loop {
        if let Ok(info) = consumer.info().await {
            let waiting = info.num_pending + info.num_ack_pending as u64;
            ctx.metrics.waiting(handler, waiting);
            if waiting > 0 && !was_waiting {
                warn!(
                    handler,
                    waiting,
                    cap = ctx.topology.limits.work_max_per_handler,
                    "handler at its cap in the work queue: its new work waits in the wait stream, other handlers go on"
                );
            } else if waiting == 0 && was_waiting {
                info!(
                    handler,
                    "handler below its cap again: its parked work is all in the work queue"
                );
            }
            was_waiting = waiting > 0;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
