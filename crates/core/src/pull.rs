//! The pull loop over a durable JetStream consumer, shared by the router and the worker: at
//! most `concurrency` messages in hand at once, pulled in explicit batches sized to the free
//! capacity (so no message waits in a hidden client buffer, and another replica can take what
//! this one has no room for), a pause after a failed pull, and handing back what was fetched
//! but not started when stopped. What a message means, and the drain, are the caller's.
//!
//! What arrives after the stop is kept, not NAKed, until the open pull request has ended: a
//! message NAKed while its request is still open is redelivered straight back into it, and
//! NAKed again, many times in milliseconds — each time counted as a delivery.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::telemetry::report;

/// How long one pull request waits for messages. Short, so a shutdown waits little for the
/// open request to end.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Pause after a failed pull, so a NATS outage is not a busy loop.
const PULL_FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// What [`run`] leaves when stopped.
pub struct Stopped {
    /// Deliveries still running, for the caller to drain.
    pub tasks: JoinSet<()>,
    /// Messages fetched but never started, received until the last pull request ended; the
    /// caller returns them (see [`nak`]) — no longer into a request of this replica.
    pub unstarted: Vec<jetstream::Message>,
}

/// Pulls from `consumer` until `stop` is cancelled, spawning `handle(message)` for each message
/// with at most `concurrency` running. Then collects what the open pull request still delivers
/// until it ends, and returns that with the tasks still running. `handler` names the handler in
/// logs (the worker's), if any.
pub async fn run<H, F>(
    consumer: &PullConsumer,
    concurrency: usize,
    stop: &CancellationToken,
    handler: Option<&str>,
    mut handle: H,
) -> Stopped
where
    H: FnMut(jetstream::Message) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut unstarted = Vec::new();
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
                warn!(handler, error = %report(&error), "pull request failed");
                pause(stop).await;
                continue;
            }
        };
        let mut first = Some(first);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    unstarted = collect_unstarted(&mut batch).await;
                    break 'pull;
                }
                next = batch.next() => match next {
                    None => break,
                    Some(Err(error)) => {
                        warn!(handler, error = %report(&*error), "pull failed");
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
                        let handled = handle(msg);
                        tasks.spawn(async move {
                            handled.await;
                            drop(permit);
                        });
                    }
                }
            }
        }
    }
    Stopped { tasks, unstarted }
}

/// NAKs `msg`, to be redelivered after `delay` (at once with `None`); a failure is logged, and
/// JetStream then redelivers after the ack wait.
pub async fn nak(msg: &jetstream::Message, delay: Option<Duration>) {
    if let Err(error) = msg.ack_with(AckKind::Nak(delay)).await {
        warn!(error = %report(&*error), "failed to nak, the event is redelivered after the ack wait");
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(PULL_FAILURE_PAUSE) => {}
    }
}

/// What the open pull request still delivers, until it ends (it expires within
/// [`PULL_EXPIRES`]); bounded by a little more than that should the server not end it.
async fn collect_unstarted(
    batch: &mut jetstream::consumer::pull::Batch,
) -> Vec<jetstream::Message> {
    let mut unstarted = Vec::new();
    let drain = async {
        while let Some(next) = batch.next().await {
            if let Ok(msg) = next {
                unstarted.push(msg);
            }
        }
    };
    let _ = tokio::time::timeout(PULL_EXPIRES + Duration::from_secs(1), drain).await;
    unstarted
}
