//! Done work items leave `HOOKYARD_WORK` in purges, not one synced removal per acknowledgement
//! (see [`hookyard_core::streams::WorkRetention`]).
//!
//! Every few tenths of a second, when this process has acknowledged something since, the
//! handler's work subject is purged below the consumer's ack floor: every item there is done,
//! by this replica or another. Items acknowledged above the floor stay while an earlier one is
//! still being retried (a NAK with a long backoff holds the floor); they count against the
//! handler's cap in the stream, so once this process holds [`STRAGGLERS`] of them it removes
//! them one by one, which costs what a work queue's acknowledgements cost and keeps a retrying
//! item from filling the handler's share of the stream. What a process knew and did not remove
//! before it stopped goes with the next purge past it.
//!
//! A failed purge or removal is logged and tried again at the next pass: it leaves done items
//! in the stream for longer, never removes one that is not done.

use std::{collections::BTreeSet, sync::Mutex, time::Duration};

use async_nats::jetstream::{
    self, ErrorCode,
    response::Response,
    stream::{DeleteStatus, Stream},
};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{dispatch::HandlerContext, report};

/// How often the work subject is purged while items are being acknowledged.
const INTERVAL: Duration = Duration::from_millis(200);

/// How long the pass after the last delivery may take.
const LAST_PASS_LIMIT: Duration = Duration::from_secs(5);

/// Items acknowledged above the ack floor this process keeps before removing them one by one.
pub const STRAGGLERS: usize = 1000;

/// Removals of single items in flight at once.
const REMOVALS_AT_ONCE: usize = 32;

/// The most acknowledged sequences this process remembers. Passes empty the set; while they
/// fail (NATS refusing purges for a long time) it would otherwise grow with every item done.
/// The oldest are forgotten first: they are done, and the next purge past them removes them.
const REMEMBERED: usize = 100 * STRAGGLERS;

/// Stream sequences of the work items this process acknowledged and has not yet seen purged.
#[derive(Debug, Default)]
pub(crate) struct Acked(Mutex<BTreeSet<u64>>);

impl Acked {
    /// Notes an acknowledged item, forgetting the oldest beyond [`REMEMBERED`].
    pub(crate) fn note(&self, sequence: u64) {
        let mut acked = self.lock();
        acked.insert(sequence);
        if acked.len() > REMEMBERED {
            acked.pop_first();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        // The set stays consistent even if a holder panicked: each operation is one call.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets what is at or below `floor` (purged), and returns the rest when there are at
    /// least `limit` of them, forgetting them too (they are removed one by one).
    fn settle(&self, floor: u64, limit: usize) -> Vec<u64> {
        let mut acked = self.lock();
        *acked = acked.split_off(&floor.saturating_add(1));
        if acked.len() < limit {
            return Vec::new();
        }
        std::mem::take(&mut *acked).into_iter().collect()
    }
}

/// Purges the handler's done items until `done` is cancelled (after the last delivery ended),
/// then once more.
pub(crate) async fn run(ctx: &HandlerContext, done: &CancellationToken) {
    let mut purger = Purger {
        ctx,
        stream: None,
        purged_below: 0,
        failing: false,
    };
    loop {
        let last = tokio::select! {
            () = tokio::time::sleep(INTERVAL) => false,
            () = done.cancelled() => true,
        };
        if last {
            if !ctx.acked.is_empty() {
                // A stopping worker does not wait long on a NATS that does not answer: what
                // this pass leaves goes with a later purge.
                let _ = tokio::time::timeout(LAST_PASS_LIMIT, purger.pass()).await;
            }
            return;
        }
        if !ctx.acked.is_empty() {
            purger.pass().await;
        }
    }
}

struct Purger<'a> {
    ctx: &'a HandlerContext,
    stream: Option<Stream>,
    /// The sequence this process last purged below: a floor that has not moved is not purged
    /// again.
    purged_below: u64,
    /// True after a failed pass, so a NATS outage logs once, not every pass.
    failing: bool,
}

impl Purger<'_> {
    async fn pass(&mut self) {
        match self.try_pass().await {
            Ok(()) => self.failing = false,
            Err(error) => {
                if !self.failing {
                    warn!(handler = %self.ctx.name, error = %report(&*error), "failed to purge done work items; they stay in the stream until a later pass");
                }
                self.failing = true;
            }
        }
    }

    async fn try_pass(&mut self) -> Result<(), async_nats::Error> {
        let ctx = self.ctx;
        let stream = match &self.stream {
            Some(stream) => stream,
            None => self
                .stream
                .insert(ctx.js.get_stream(ctx.topology.work_stream()).await?),
        };
        self.purged_below = ctx
            .topology
            .purge_done_work(stream, &ctx.name, self.purged_below)
            .await?;
        let floor = self.purged_below.saturating_sub(1);
        let stragglers = ctx.acked.settle(floor, STRAGGLERS);
        remove(&ctx.js, &stream.cached_info().config.name, stragglers).await;
        Ok(())
    }
}

/// Removes each of `sequences` (acknowledged items above the floor), logging the first failure.
async fn remove(js: &jetstream::Context, stream: &str, sequences: Vec<u64>) {
    let subject = format!("STREAM.MSG.DELETE.{stream}");
    let failures = futures::stream::iter(sequences)
        .map(|seq| {
            let subject = subject.clone();
            async move {
                // No erase: a removal like an acknowledgement's in a work queue, not a rewrite.
                let payload = serde_json::json!({ "seq": seq, "no_erase": true });
                let reply: Result<Response<DeleteStatus>, _> = js.request(subject, &payload).await;
                match reply {
                    Ok(Response::Ok(_)) => None,
                    // Purged meanwhile by another replica's pass: what was wanted.
                    Ok(Response::Err { error })
                        if error.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
                    {
                        None
                    }
                    Ok(Response::Err { error }) => Some(error.to_string()),
                    Err(error) => Some(report(&error)),
                }
            }
        })
        .buffer_unordered(REMOVALS_AT_ONCE)
        .filter_map(std::future::ready)
        .collect::<Vec<_>>()
        .await;
    if let Some(first) = failures.first() {
        warn!(stream, failed = failures.len(), error = %first, "failed to remove done work items above the ack floor; a later purge removes them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_forgets_what_the_floor_passed_and_hands_over_stragglers_at_the_limit() {
        let acked = Acked::default();
        for seq in [3, 5, 8, 9, 12] {
            acked.note(seq);
        }
        assert!(acked.settle(5, 4).is_empty(), "3 left, under the limit");
        assert_eq!(*acked.lock(), BTreeSet::from([8, 9, 12]));
        assert_eq!(acked.settle(5, 3), vec![8, 9, 12]);
        assert!(acked.is_empty());
        acked.note(20);
        assert!(acked.settle(u64::MAX - 1, 1).is_empty());
        assert!(acked.is_empty());
    }

    #[test]
    fn while_passes_fail_the_set_keeps_only_the_newest() {
        let acked = Acked::default();
        let noted = REMEMBERED as u64 + 10;
        for seq in 1..=noted {
            acked.note(seq);
        }
        let kept = acked.lock();
        assert_eq!(kept.len(), REMEMBERED);
        assert_eq!(kept.first(), Some(&11));
        assert_eq!(kept.last(), Some(&noted));
    }
}
