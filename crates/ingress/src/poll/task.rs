//! The life of one polling source in one replica: wait for its lease, then poll on its
//! schedule while holding it, backing off after failures.
//!
//! Polls of a source run one after the other in one task, so a poll that takes longer than the
//! interval delays the next instead of overlapping it; the lease keeps other replicas out. The
//! next poll starts `every` after the previous one started (at once when it took longer), or at
//! the schedule's next time after the previous one ended. After a failed poll the next try waits
//! the source's `backoff` (doubled per failure in a row, capped), or as long as egress said
//! (an open circuit breaker). A new holder of a lease waits until the source is due according to
//! the time of the last successful poll, which is stored with the cursor.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use hookyard_core::telemetry::report;
use hookyard_proto::egress::v1::egress_service_client::EgressServiceClient;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::{
    PollError,
    cycle::{self, Poller},
    lease::{Lease, Leases},
    metrics::PollMetrics,
    state::{Cursors, State},
    store::{Store, Stored},
};

/// What every source's task shares.
pub(crate) struct Shared {
    pub store: Store,
    pub cursors: Cursors,
    pub leases: Leases,
    pub egress: EgressServiceClient<tonic::transport::Channel>,
    pub metrics: PollMetrics,
}

/// Polls `poller`'s source whenever this replica holds its lease, until `shutdown`.
pub(crate) async fn run(shared: Arc<Shared>, poller: Poller, shutdown: CancellationToken) {
    let span = tracing::info_span!("poll", source = %poller.source);
    lead(&shared, &poller, &shutdown).instrument(span).await;
}

async fn lead(shared: &Shared, poller: &Poller, shutdown: &CancellationToken) {
    let look = (shared.leases.ttl() / 4).max(Duration::from_millis(250));
    loop {
        let lease = match shared.leases.try_take(&poller.source).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                if pause(look, shutdown).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                warn!(error = %report(&error), "cannot read the poll lease");
                if pause(look, shutdown).await {
                    return;
                }
                continue;
            }
        };
        info!("poll lease taken, polling");
        shared.metrics.leader(&poller.source, true);
        let lost = shutdown.child_token();
        let ((), kept) = tokio::join!(
            polling(shared, poller, &lost),
            keep(&shared.leases, lease, &lost, shutdown)
        );
        shared.metrics.leader(&poller.source, false);
        if shutdown.is_cancelled() {
            if let Some(lease) = kept {
                shared.leases.release(lease).await;
            }
            return;
        }
        warn!("poll lease lost, polling stopped");
    }
}

/// Waits `d`; true when `shutdown` came first.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = shutdown.cancelled() => true,
    }
}

/// Renews `lease` every third of its TTL until `shutdown` (then hands it back for release) or
/// until it is lost (then cancels `lost`).
async fn keep(
    leases: &Leases,
    mut lease: Lease,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> Option<Lease> {
    let every = leases.ttl() / 3;
    let mut renewed = Instant::now();
    loop {
        if pause(every, shutdown).await {
            return Some(lease);
        }
        match tokio::time::timeout(every, leases.renew(&mut lease)).await {
            Ok(Ok(true)) => renewed = Instant::now(),
            Ok(Ok(false)) => break,
            Ok(Err(error)) => warn!(error = %report(&error), "cannot renew the poll lease"),
            Err(_) => warn!("renewing the poll lease timed out"),
        }
        if renewed.elapsed() >= leases.ttl() {
            break;
        }
    }
    lost.cancel();
    None
}

/// Polls on the source's schedule until `stop`.
async fn polling(shared: &Shared, poller: &Poller, stop: &CancellationToken) {
    let mut failures = 0u32;
    let mut due = first_due(shared, poller).await;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = stop.cancelled() => return,
        }
        let (started, started_at) = (SystemTime::now(), Instant::now());
        let result = tokio::select! {
            result = once(shared, poller, started) => result,
            () = stop.cancelled() => return,
        };
        match result {
            Ok((stored, outcome)) => {
                failures = 0;
                shared
                    .metrics
                    .succeeded(&poller.source, stored.new, stored.duplicates);
                info!(
                    pages = outcome.pages,
                    records = outcome.records,
                    stored = stored.new,
                    duplicates = stored.duplicates,
                    page_limit = outcome.page_limit,
                    "poll done"
                );
                due = next_due(poller, started_at);
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = error
                    .retry_after()
                    .unwrap_or_else(|| poller.poll.backoff.delay(failures));
                shared.metrics.failed(&poller.source, error.kind(), delay);
                warn!(
                    kind = error.kind(),
                    error = %report(&error),
                    failures,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "poll failed, backing off"
                );
                due = Instant::now() + delay;
            }
        }
    }
}

/// One poll: read the state, store every page, then store the cursor.
async fn once(
    shared: &Shared,
    poller: &Poller,
    started: SystemTime,
) -> Result<(Stored, cycle::Outcome), PollError> {
    let read = shared.cursors.read(&poller.source).await?;
    let cursor = read
        .state
        .as_ref()
        .map_or_else(|| poller.poll.initial_cursor.clone(), |s| s.cursor.clone());
    let mut stored = Stored::default();
    let mut walk = cycle::Walk::new(poller, cursor, started);
    while let Some(page) = walk.next_page(&shared.egress).await? {
        let unnamed = page.records.iter().filter(|r| r.id.is_none()).count();
        if unnamed > 0 {
            warn!(
                records = unnamed,
                "records without an id (record_id gave nothing), stored under a hash of the record"
            );
        }
        let events = page.records.into_iter().map(|r| r.event).collect();
        let part = shared.store.page(events).await?;
        stored.new += part.new;
        stored.duplicates += part.duplicates;
    }
    let outcome = walk.finish()?;
    let state = State {
        cursor: outcome.cursor.clone(),
        polled_at_ms: millis(started),
    };
    shared.cursors.write(&poller.source, &read, &state).await?;
    Ok((stored, outcome))
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When the first poll of a new lease holder is due: after the stored last poll, on schedule.
async fn first_due(shared: &Shared, poller: &Poller) -> Instant {
    let Ok(read) = shared.cursors.read(&poller.source).await else {
        return Instant::now();
    };
    let Some(state) = read.state else {
        return Instant::now();
    };
    let last = SystemTime::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(state.polled_at_ms).unwrap_or(0));
    let due = match (&poller.poll.every, &poller.poll.schedule) {
        (Some(every), _) => Some(last + *every),
        (None, Some(schedule)) => schedule.next_after(last),
        (None, None) => None,
    };
    let wait = due
        .and_then(|due| due.duration_since(SystemTime::now()).ok())
        .unwrap_or_default();
    Instant::now() + wait
}

/// When the poll after one that started at `started` (and has just ended) is due.
fn next_due(poller: &Poller, started: Instant) -> Instant {
    match (&poller.poll.every, &poller.poll.schedule) {
        (Some(every), _) => (started + *every).max(Instant::now()),
        (None, Some(schedule)) => {
            let now = SystemTime::now();
            let wait = schedule
                .next_after(now)
                .and_then(|next| next.duration_since(now).ok())
                // A schedule that never fires again (validation refuses those) polls hourly.
                .unwrap_or(Duration::from_secs(3600));
            Instant::now() + wait
        }
        (None, None) => Instant::now() + Duration::from_secs(3600),
    }
}
