//! One replay's sending and counting: work items published with a bounded window of
//! unacknowledged publishes, dead letters deleted once their work items are stored, progress
//! to the caller, and the record at the end.

use std::{
    collections::BTreeMap,
    future::IntoFuture as _,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::{HeaderMap, jetstream::context::PublishAckFuture};
use futures::{StreamExt as _, stream::FuturesUnordered};
use hookyard_core::envelope::{
    self, HEADER_EVENT_ID, HEADER_HANDLER, HEADER_REPLAY_ID, NATS_MSG_ID,
};
use hookyard_proto::{
    admin::v1::{HandlerCount, IdempotencyKey, ReplayProgress, ReplayRecord, ReplayRequest},
    event::v1::{Envelope, WorkItem},
};
use prost::Message as _;
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    admin::{Context, Error, dead},
    route::{self, Decision},
};

/// Publishes awaiting their acknowledgement at once, at most.
const WINDOW: usize = 256;
/// Least time between two progress messages.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

type Ack = futures::future::BoxFuture<'static, (String, bool)>;

/// The state of one replay.
pub(super) struct Sender {
    ctx: Arc<Context>,
    record: ReplayRecord,
    counts: BTreeMap<String, u64>,
    new_key: bool,
    total: u64,
    scanned: u64,
    acks: FuturesUnordered<Ack>,
    progress: mpsc::Sender<ReplayProgress>,
    last_progress: Instant,
}

impl Sender {
    pub(super) fn new(
        ctx: Arc<Context>,
        request: &ReplayRequest,
        progress: mpsc::Sender<ReplayProgress>,
    ) -> Self {
        let key = match request.idempotency_key() {
            IdempotencyKey::New => IdempotencyKey::New,
            _ => IdempotencyKey::Original,
        };
        let record = ReplayRecord {
            id: format!("rpl_{:016x}", fastrand::u64(..)),
            started_at_ms: envelope::now_ms(),
            handler: request.handler.clone(),
            dry_run: request.dry_run,
            idempotency_key: key.into(),
            ..Default::default()
        };
        Self {
            ctx,
            record,
            counts: BTreeMap::new(),
            new_key: key == IdempotencyKey::New,
            total: 0,
            scanned: 0,
            acks: FuturesUnordered::new(),
            progress,
            last_progress: Instant::now(),
        }
    }

    pub(super) fn id(&self) -> &str {
        &self.record.id
    }

    pub(super) fn total(&mut self, total: u64) {
        self.total = total;
        self.report(false);
    }

    pub(super) fn scanned(&mut self) {
        self.scanned += 1;
        self.report(false);
    }

    pub(super) fn skipped(&mut self) {
        self.record.events += 1;
        self.record.skipped += 1;
    }

    /// Records why the replay stopped before its end.
    pub(super) fn stopped_by(&mut self, error: &Error) {
        self.record.error = crate::report(error);
    }

    /// Where `event` goes: the asked handler, else the handlers it routes to today.
    fn targets(&self, event: &Envelope, handler: Option<&str>) -> Option<(String, Vec<String>)> {
        let integration = self.ctx.table.current();
        let asked = (!self.record.handler.is_empty()).then_some(self.record.handler.as_str());
        match (asked.or(handler), route::decide(&integration, event)) {
            (Some(name), decision) => {
                let kind = match decision {
                    Decision::Handlers { event_type, .. } => event_type,
                    Decision::Unrouted { event_type, .. } => event_type,
                };
                integration
                    .handlers
                    .contains_key(name)
                    .then(|| (kind, vec![name.to_owned()]))
            }
            (
                None,
                Decision::Handlers {
                    event_type,
                    handlers,
                },
            ) => Some((event_type, handlers)),
            (None, Decision::Unrouted { .. }) => None,
        }
    }

    /// Sends `event` to its targets (`handler` for a dead letter of that handler).
    pub(super) async fn event(&mut self, event: &Envelope, handler: Option<&str>) {
        self.record.events += 1;
        let Some((event_type, targets)) = self.targets(event, handler) else {
            self.record.skipped += 1;
            return;
        };
        for target in targets {
            if self.record.dry_run {
                self.sent(&target);
                continue;
            }
            let ack = self.publish(event, &event_type, &target).await;
            self.acks.push(ack);
            while self.acks.len() >= WINDOW {
                self.settle_one().await;
            }
        }
    }

    /// Sends a dead letter back and deletes it once every work item is stored.
    pub(super) async fn dead_letter(&mut self, stored: dead::Stored) {
        let Some(event) = stored.letter.event.clone() else {
            self.skipped();
            return;
        };
        let handler = (!stored.letter.handler.is_empty()).then_some(stored.letter.handler.clone());
        let before = (
            self.record.work_items,
            self.record.failed,
            self.record.skipped,
        );
        self.event(&event, handler.as_deref()).await;
        while !self.acks.is_empty() {
            self.settle_one().await;
        }
        let sent = self.record.work_items > before.0;
        let clean = self.record.failed == before.1 && self.record.skipped == before.2;
        if self.record.dry_run || !sent || !clean {
            return;
        }
        match dead::delete(&self.ctx, stored.sequence).await {
            Ok(true) => self.record.dead_letters_removed += 1,
            Ok(false) => {}
            Err(error) => {
                warn!(sequence = stored.sequence, error = %crate::report(&error), "replayed dead letter not deleted");
            }
        }
    }

    async fn publish(&mut self, event: &Envelope, event_type: &str, handler: &str) -> Ack {
        let id = self.record.id.clone();
        let msg_id = envelope::replay_msg_id(&event.id, handler, &id);
        let item = WorkItem {
            event: Some(event.clone()),
            handler: handler.to_owned(),
            event_type: event_type.to_owned(),
            replay_id: id.clone(),
            idempotency_key: if self.new_key {
                msg_id.clone()
            } else {
                String::new()
            },
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MSG_ID, msg_id.as_str());
        headers.insert(HEADER_EVENT_ID, event.id.as_str());
        headers.insert(HEADER_HANDLER, handler);
        headers.insert(HEADER_REPLAY_ID, id.as_str());
        let subject = self.ctx.topology.work_subject(handler);
        let published = self
            .ctx
            .js
            .publish_with_headers(subject, headers, item.encode_to_vec().into())
            .await;
        let handler = handler.to_owned();
        match published {
            Ok(ack) => Box::pin(settle(handler, ack)),
            Err(error) => {
                warn!(handler, error = %crate::report(&error), "replayed work item not stored");
                Box::pin(async move { (handler, false) })
            }
        }
    }

    async fn settle_one(&mut self) {
        if let Some((handler, stored)) = self.acks.next().await {
            if stored {
                self.sent(&handler);
            } else {
                self.record.failed += 1;
            }
        }
    }

    fn sent(&mut self, handler: &str) {
        self.record.work_items += 1;
        *self.counts.entry(handler.to_owned()).or_insert(0) += 1;
        self.report(false);
    }

    fn report(&mut self, last: bool) {
        if !last && self.last_progress.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_progress = Instant::now();
        let _ = self.progress.try_send(ReplayProgress {
            replay_id: self.record.id.clone(),
            total: self.total,
            scanned: self.scanned,
            sent: self.record.work_items,
            done: false,
            record: None,
        });
    }

    /// Waits for the last acknowledgements, stores the record and sends the last progress.
    pub(super) async fn finish(mut self, ctx: &Context, what: String) -> ReplayRecord {
        while !self.acks.is_empty() {
            self.settle_one().await;
        }
        self.record.what = what;
        self.record.finished_at_ms = envelope::now_ms();
        self.record.handlers = std::mem::take(&mut self.counts)
            .into_iter()
            .map(|(handler, work_items)| HandlerCount {
                handler,
                work_items,
            })
            .collect();
        store(ctx, &self.record).await;
        let last = ReplayProgress {
            replay_id: self.record.id.clone(),
            total: self.total,
            scanned: self.scanned,
            sent: self.record.work_items,
            done: true,
            record: Some(self.record.clone()),
        };
        // The caller may be gone; the replay is recorded either way.
        let _ = self.progress.send(last).await;
        self.record
    }
}

async fn settle(handler: String, ack: PublishAckFuture) -> (String, bool) {
    match ack.into_future().await {
        Ok(_) => (handler, true),
        Err(error) => {
            warn!(handler, error = %crate::report(&error), "replayed work item not acknowledged");
            (handler, false)
        }
    }
}

/// Stores the record of a replay; a failure is logged (the replay itself is done).
async fn store(ctx: &Context, record: &ReplayRecord) {
    let subject = ctx.topology.audit_replay_subject();
    let stored = match ctx.js.publish(subject, record.encode_to_vec().into()).await {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| crate::report(&e)),
        Err(e) => Err(crate::report(&e)),
    };
    if let Err(error) = stored {
        warn!(replay = %record.id, error, "replay record not stored");
    }
}
