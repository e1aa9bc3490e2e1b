//! The pull loop of one handler, through the shared [`hookyard_core::pull`] loop (at most
//! `concurrency` deliveries at once, pulled in explicit batches sized to the free capacity),
//! and its graceful shutdown: in-flight deliveries get the grace, then are NAKed.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::consumer::PullConsumer;
use hookyard_core::pull;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::dispatch::{self, HandlerContext};

/// After the grace ran out, how long aborted deliveries get to send their NAK.
const ABORT_NAK_LIMIT: Duration = Duration::from_secs(5);

/// Pulls and handles until `stop` is cancelled. Then it hands back what was fetched but not
/// started (once the last pull request has ended, see [`crate::returns`]),
/// lets in-flight deliveries finish within `grace`, and NAKs those still running after it.
pub(crate) async fn run(
    consumer: PullConsumer,
    ctx: Arc<HandlerContext>,
    stop: &CancellationToken,
    grace: Duration,
) {
    let concurrency = ctx.handler.concurrency.max(1);
    let abort = CancellationToken::new();
    let pull::Stopped { tasks, unstarted } = pull::run(
        &consumer,
        concurrency,
        stop,
        Some(ctx.name.as_str()),
        |msg| {
            let ctx = ctx.clone();
            let abort = abort.clone();
            async move { dispatch::handle(&ctx, msg, &abort).await }
        },
    )
    .await;
    for msg in &unstarted {
        crate::returns::hand_back(&ctx, msg, None).await;
    }
    drain(&ctx.name, tasks, grace, &abort).await;
}

async fn drain(handler: &str, mut tasks: JoinSet<()>, grace: Duration, abort: &CancellationToken) {
    if tasks.is_empty() {
        return;
    }
    info!(
        handler,
        in_flight = tasks.len(),
        "waiting for in-flight events"
    );
    let finished =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_ok() {
        return;
    }
    warn!(
        handler,
        in_flight = tasks.len(),
        "shutdown grace ran out, returning in-flight events"
    );
    abort.cancel();
    let returned = tokio::time::timeout(ABORT_NAK_LIMIT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if returned.is_err() {
        // Whatever is left is redelivered by JetStream after the ack wait.
        tasks.abort_all();
    }
}
