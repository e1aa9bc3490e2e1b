//! The pull loop of one handler: at most `concurrency` deliveries at once, pulled in explicit
//! batches sized to the free capacity (so nothing waits in a hidden client buffer, and another
//! replica can take what this one has no room for), and the graceful shutdown.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    dispatch::{self, HandlerContext, nak},
    report,
};

/// How long one pull request waits for messages. Short, so a shutdown waits little for the
/// open request to end.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Pause after a failed pull, so a NATS outage is not a busy loop.
const PULL_FAILURE_PAUSE: Duration = Duration::from_secs(1);
/// After the grace ran out, how long aborted deliveries get to send their NAK.
const ABORT_NAK_LIMIT: Duration = Duration::from_secs(5);

/// Pulls and handles until `stop` is cancelled. Then it NAKs what was fetched but not started,
/// lets in-flight deliveries finish within `grace`, and NAKs those still running after it.
pub(crate) async fn run(
    consumer: PullConsumer,
    ctx: Arc<HandlerContext>,
    stop: &CancellationToken,
    grace: Duration,
) {
    let concurrency = ctx.handler.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let abort = CancellationToken::new();
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
                warn!(handler = %ctx.name, error = %report(&error), "pull request failed");
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
                        warn!(handler = %ctx.name, error = %report(&*error), "pull failed");
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
                        let abort = abort.clone();
                        tasks.spawn(async move {
                            dispatch::handle(&ctx, msg, &abort).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
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
