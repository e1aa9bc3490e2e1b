//! `Replay`: events (by id or filter, from `HOOKYARD_IN`) or dead letters sent again as new
//! work items, and the record of every replay on `hookyard.audit.replay`.
//!
//! A replayed work item keeps the original event (and its id) and gets its own `Nats-Msg-Id`
//! (`<event id>:<handler>:<replay id>`), so the work stream does not absorb it as a duplicate
//! of the first delivery. Its idempotency key is the original one unless the request asks for
//! a new one (`WorkItem.idempotency_key`). A dead letter is deleted only after every work item
//! made from it is acknowledged by JetStream, so a failed replay leaves it in place.
//!
//! A replay runs in its own task to the end, whether or not its caller stays; progress goes to
//! the caller best effort (a slow caller misses intermediate updates, never the last one).

mod sender;

use std::sync::Arc;

use hookyard_proto::admin::v1::{
    DeadLetterSelector, EventFilter, ListReplaysRequest, ReplayProgress, ReplayRecord,
    ReplayRequest, replay_request::What,
};
use prost::Message as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    Context, Error, dead, events,
    scan::{self, Scan, Start},
};
use sender::Sender;

/// Event ids one replay may name.
const MAX_IDS: usize = 10_000;

/// Creates the audit stream the records go to, in the background (retrying until NATS answers),
/// so the admin API serves reads meanwhile.
pub(crate) fn prepare(ctx: &Arc<Context>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let stop = ctx.stop.clone();
        hookyard_core::retry::until_ok(
            &stop,
            || ctx.topology.ensure_audit(&ctx.js),
            |attempt, error| {
                warn!(attempt, error = %crate::report(error), "audit stream setup failed, retrying");
            },
        )
        .await;
    });
}

/// Checks `request` and starts the replay; its progress arrives on the receiver.
pub(crate) fn start(
    ctx: Arc<Context>,
    request: ReplayRequest,
) -> Result<mpsc::Receiver<ReplayProgress>, Error> {
    check(&ctx, &request)?;
    let (progress, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        let sender = Sender::new(ctx.clone(), &request, progress);
        let record = run(&ctx, request, sender).await;
        info!(
            replay = %record.id,
            events = record.events,
            work_items = record.work_items,
            skipped = record.skipped,
            failed = record.failed,
            dry_run = record.dry_run,
            "replay finished"
        );
    });
    Ok(receiver)
}

/// Runs the replay to its end and answers its record (`None` when the replay ended without
/// one, as when the router stops meanwhile).
pub(crate) async fn to_end(
    ctx: Arc<Context>,
    request: ReplayRequest,
) -> Result<Option<ReplayRecord>, Error> {
    let mut progress = start(ctx, request)?;
    while let Some(p) = progress.recv().await {
        if let Some(record) = p.record.filter(|_| p.done) {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

fn check(ctx: &Context, request: &ReplayRequest) -> Result<(), Error> {
    if !request.handler.is_empty() && !ctx.table.current().handlers.contains_key(&request.handler) {
        return Err(Error::NotFound {
            kind: "handler",
            id: request.handler.clone(),
        });
    }
    match &request.what {
        None => Err(Error::Invalid(
            "say what to replay: events, filter or dead_letters",
        )),
        Some(What::Events(ids)) if ids.ids.is_empty() => Err(Error::Invalid("no event ids")),
        Some(What::Events(ids)) if ids.ids.len() > MAX_IDS => {
            Err(Error::Invalid("at most 10000 event ids at once"))
        }
        Some(What::Events(_)) => Ok(()),
        Some(What::Filter(f)) => scan::check_range(f.since_ms, f.until_ms),
        Some(What::DeadLetters(selector)) => dead::check(selector),
    }
}

/// What a request selects, as text for the record.
fn describe(what: &What) -> String {
    match what {
        What::Events(ids) => format!("{} event id(s)", ids.ids.len()),
        What::Filter(f) => {
            let mut text = "events".to_owned();
            for (name, value) in [("source", &f.source), ("type", &f.r#type)] {
                if !value.is_empty() {
                    text.push_str(&format!(" {name}={value}"));
                }
            }
            for (name, ms) in [("since_ms", f.since_ms), ("until_ms", f.until_ms)] {
                if ms > 0 {
                    text.push_str(&format!(" {name}={ms}"));
                }
            }
            text
        }
        What::DeadLetters(s) if !s.sequences.is_empty() => {
            format!("{} dead letter(s) by sequence", s.sequences.len())
        }
        What::DeadLetters(s) => {
            let mut text = "dead letters".to_owned();
            for (name, value) in [("handler", &s.handler), ("reason", &s.reason)] {
                if !value.is_empty() {
                    text.push_str(&format!(" {name}={value}"));
                }
            }
            text
        }
    }
}

async fn run(ctx: &Context, request: ReplayRequest, mut sender: Sender) -> ReplayRecord {
    let Some(what) = request.what else {
        return sender.finish(ctx, String::new()).await;
    };
    let described = describe(&what);
    let result = match &what {
        What::Events(ids) => by_ids(ctx, &ids.ids, &mut sender).await,
        What::Filter(filter) => by_filter(ctx, filter, &mut sender).await,
        What::DeadLetters(selector) => dead_letters(ctx, selector, &mut sender).await,
    };
    if let Err(error) = result {
        warn!(replay = %sender.id(), error = %crate::report(&error), "replay stopped early");
        sender.stopped_by(&error);
    }
    sender.finish(ctx, described).await
}

async fn by_ids(ctx: &Context, ids: &[String], sender: &mut Sender) -> Result<(), Error> {
    sender.total(ids.len() as u64);
    for id in ids {
        sender.scanned();
        match events::find(ctx, id).await {
            Ok(stored) => sender.event(&stored.event, None).await,
            Err(Error::NotFound { .. } | Error::Invalid(_)) => sender.skipped(),
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

async fn by_filter(ctx: &Context, filter: &EventFilter, sender: &mut Sender) -> Result<(), Error> {
    let start = if filter.since_ms > 0 {
        Start::Time(filter.since_ms)
    } else {
        Start::All
    };
    let mut range = events::Range::open(ctx, filter, start).await?;
    sender.total(range.len());
    while let Some(seen) = range.next(ctx).await? {
        sender.scanned();
        if seen.matches {
            sender.event(&seen.stored.event, None).await;
        }
    }
    Ok(())
}

async fn dead_letters(
    ctx: &Context,
    selector: &DeadLetterSelector,
    sender: &mut Sender,
) -> Result<(), Error> {
    let total = if selector.sequences.is_empty() {
        dead::count(ctx, selector).await?
    } else {
        selector.sequences.len() as u64
    };
    sender.total(total);
    let mut selection = dead::Selection::open(ctx, selector).await?;
    while let Some(stored) = selection.next(ctx).await? {
        sender.scanned();
        sender.dead_letter(stored).await;
    }
    Ok(())
}

/// A page of replay records, oldest first.
pub(crate) async fn list(
    ctx: &Context,
    request: &ListReplaysRequest,
) -> Result<(Vec<ReplayRecord>, String), Error> {
    let start = scan::page_start(&request.page_token, 0)?;
    let subject = ctx.topology.audit_replay_subject();
    let mut scan = Scan::open(
        &ctx.js,
        &ctx.topology.audit_stream(),
        vec![subject],
        start,
        false,
    )
    .await?;
    let size = scan::page_size(request.page_size);
    let mut out = Vec::new();
    while let Some(msg) = scan.next().await? {
        if let Ok(record) = ReplayRecord::decode(msg.payload.as_ref()) {
            out.push(record);
        }
        if out.len() == size {
            let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            return Ok((out, scan::token_after(sequence)));
        }
    }
    Ok((out, String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_proto::admin::v1::EventIds;

    #[test]
    fn the_record_says_what_was_selected() {
        let filter = What::Filter(EventFilter {
            source: "shop".to_owned(),
            r#type: "order.*".to_owned(),
            since_ms: 5,
            until_ms: 0,
        });
        assert_eq!(
            describe(&filter),
            "events source=shop type=order.* since_ms=5"
        );
        let ids = What::Events(EventIds {
            ids: vec!["a".to_owned(), "b".to_owned()],
        });
        assert_eq!(describe(&ids), "2 event id(s)");
        let dead = What::DeadLetters(DeadLetterSelector {
            handler: "orders".to_owned(),
            ..Default::default()
        });
        assert_eq!(describe(&dead), "dead letters handler=orders");
    }
}
