//! Dead letters in `HOOKYARD_DLQ`: listing, reading one, selecting some (for a purge or a
//! replay) and deleting them. A dead letter's id is its stream sequence.

use async_nats::jetstream::{self, ErrorCode, stream::DeleteMessageErrorKind};
use hookyard_core::streams::UNROUTED;
use hookyard_proto::{
    admin::v1::{DeadLetterSelector, DeadLetterSummary, Event, ListDeadLettersRequest},
    event::v1::DeadLetter,
};
use prost::Message as _;

use super::{
    Context, Error, events,
    scan::{self, Scan, Start},
};

/// Stored dead letters one page looks at, at most.
const PAGE_SCAN: u64 = 5000;
/// Sequences one selector may name.
pub(crate) const MAX_SEQUENCES: usize = 10_000;

/// A dead letter read from the stream.
pub(crate) struct Stored {
    pub sequence: u64,
    pub letter: DeadLetter,
}

pub(crate) fn summary(stored: &Stored) -> DeadLetterSummary {
    let l = &stored.letter;
    let event = l.event.as_ref();
    DeadLetterSummary {
        sequence: stored.sequence,
        event_id: event.map(|e| e.id.clone()).unwrap_or_default(),
        source: event.map(|e| e.source.clone()).unwrap_or_default(),
        handler: l.handler.clone(),
        event_type: l.event_type.clone(),
        reason: l.reason.clone(),
        error: l.error.clone(),
        attempts: l.attempts,
        last_status: l.last_status,
        failed_at_ms: l.failed_at_ms,
    }
}

fn decode(sequence: u64, payload: &[u8]) -> Stored {
    let letter = DeadLetter::decode(payload).unwrap_or_else(|_| DeadLetter {
        reason: "bad_event".to_owned(),
        error: "the dead letter cannot be decoded".to_owned(),
        ..Default::default()
    });
    Stored { sequence, letter }
}

/// The filter subject of a handler's dead letters (`unrouted` included), or of all.
fn subject(ctx: &Context, handler: &str) -> String {
    match handler {
        "" => ctx.topology.dlq_subject(">"),
        UNROUTED => ctx.topology.unrouted_subject(),
        name => ctx.topology.dlq_subject(name),
    }
}

/// What a filter (not a list of sequences) selects.
#[derive(Clone, Default)]
pub(crate) struct Filter {
    handler: String,
    reason: String,
    since_ms: i64,
    until_ms: i64,
}

impl Filter {
    fn passes(&self, letter: &DeadLetter) -> bool {
        (self.reason.is_empty() || self.reason == letter.reason)
            && (self.since_ms == 0 || letter.failed_at_ms >= self.since_ms)
            && (self.until_ms == 0 || letter.failed_at_ms < self.until_ms)
    }
}

/// A page of dead letters, oldest first.
pub(crate) async fn list(
    ctx: &Context,
    request: &ListDeadLettersRequest,
) -> Result<(Vec<DeadLetterSummary>, String), Error> {
    scan::check_range(request.since_ms, request.until_ms)?;
    let start = scan::page_start(&request.page_token, request.since_ms)?;
    let filter = Filter {
        handler: request.handler.clone(),
        reason: request.reason.clone(),
        since_ms: request.since_ms,
        until_ms: request.until_ms,
    };
    let subject = subject(ctx, &filter.handler);
    let mut scan = Scan::open(
        &ctx.js,
        &ctx.topology.dlq_stream(),
        vec![subject],
        start,
        false,
    )
    .await?;
    let (size, mut out, mut scanned) = (scan::page_size(request.page_size), Vec::new(), 0);
    while let Some(msg) = scan.next().await? {
        let stored = decode(sequence(&msg), &msg.payload);
        scanned += 1;
        if filter.passes(&stored.letter) {
            out.push(summary(&stored));
        }
        if out.len() == size || scanned == PAGE_SCAN {
            return Ok((out, scan::token_after(stored.sequence)));
        }
    }
    Ok((out, String::new()))
}

fn sequence(msg: &jetstream::Message) -> u64 {
    msg.info().map(|i| i.stream_sequence).unwrap_or(0)
}

async fn stream(ctx: &Context) -> Result<jetstream::stream::Stream, Error> {
    ctx.js
        .get_stream(ctx.topology.dlq_stream())
        .await
        .map_err(|e| Error::nats("read the dead letters")(e.into()))
}

/// One dead letter and its event, redacted.
pub(crate) async fn get(ctx: &Context, sequence: u64) -> Result<(DeadLetterSummary, Event), Error> {
    let stored = read(ctx, &stream(ctx).await?, sequence).await?;
    let integration = ctx.table.current();
    let event = stored.letter.event.clone().unwrap_or_default();
    let view = events::Stored {
        event: event.clone(),
        sequence: 0,
        stored_at_ms: 0,
    };
    let summary_of_event = events::summary(&view, stored.letter.event_type.clone());
    Ok((
        summary(&stored),
        events::redacted(&integration, &event, summary_of_event),
    ))
}

async fn read(
    ctx: &Context,
    stream: &jetstream::stream::Stream,
    sequence: u64,
) -> Result<Stored, Error> {
    let not_found = || Error::NotFound {
        kind: "dead letter",
        id: sequence.to_string(),
    };
    let raw = stream
        .get_raw_message(sequence)
        .await
        .map_err(|_| not_found())?;
    let dlq_prefix = ctx.topology.dlq_subject("");
    if !raw.subject.as_str().starts_with(&dlq_prefix) {
        return Err(not_found());
    }
    Ok(decode(sequence, &raw.payload))
}

/// Checks that a selector selects something on purpose.
pub(crate) fn check(selector: &DeadLetterSelector) -> Result<(), Error> {
    scan::check_range(selector.since_ms, selector.until_ms)?;
    if selector.sequences.len() > MAX_SEQUENCES {
        return Err(Error::Invalid(
            "at most 10000 dead letters by sequence at once",
        ));
    }
    let filtered = !selector.handler.is_empty()
        || !selector.reason.is_empty()
        || selector.since_ms > 0
        || selector.until_ms > 0;
    if selector.sequences.is_empty() && !filtered && !selector.all {
        return Err(Error::Invalid(
            "name dead letters by sequence, filter them, or set all",
        ));
    }
    Ok(())
}

/// The dead letters a selector selects, oldest first, read one at a time.
pub(crate) enum Selection {
    /// Named by sequence.
    Sequences {
        stream: Box<jetstream::stream::Stream>,
        sequences: std::vec::IntoIter<u64>,
    },
    /// Filtered from a scan.
    Scan { scan: Box<Scan>, filter: Filter },
}

impl Selection {
    /// Checks `selector` and starts reading what it selects.
    pub(crate) async fn open(ctx: &Context, selector: &DeadLetterSelector) -> Result<Self, Error> {
        check(selector)?;
        if !selector.sequences.is_empty() {
            return Ok(Self::Sequences {
                stream: Box::new(stream(ctx).await?),
                sequences: selector.sequences.clone().into_iter(),
            });
        }
        let filter = Filter {
            handler: selector.handler.clone(),
            reason: selector.reason.clone(),
            since_ms: selector.since_ms,
            until_ms: selector.until_ms,
        };
        let subject = subject(ctx, &filter.handler);
        let dlq = ctx.topology.dlq_stream();
        let scan = Scan::open(&ctx.js, &dlq, vec![subject], Start::All, false).await?;
        Ok(Self::Scan {
            scan: Box::new(scan),
            filter,
        })
    }

    /// The next selected dead letter; sequences no longer kept are passed over.
    pub(crate) async fn next(&mut self, ctx: &Context) -> Result<Option<Stored>, Error> {
        match self {
            Self::Sequences { stream, sequences } => {
                for sequence in sequences.by_ref() {
                    match read(ctx, stream, sequence).await {
                        Ok(stored) => return Ok(Some(stored)),
                        Err(Error::NotFound { .. }) => continue,
                        Err(other) => return Err(other),
                    }
                }
                Ok(None)
            }
            Self::Scan { scan, filter } => {
                while let Some(msg) = scan.next().await? {
                    let stored = decode(sequence(&msg), &msg.payload);
                    if filter.passes(&stored.letter) {
                        return Ok(Some(stored));
                    }
                }
                Ok(None)
            }
        }
    }
}

/// How many dead letters `selector` selects (for a dry run and for progress).
pub(crate) async fn count(ctx: &Context, selector: &DeadLetterSelector) -> Result<u64, Error> {
    let mut selection = Selection::open(ctx, selector).await?;
    let mut n = 0;
    while selection.next(ctx).await?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Deletes the dead letter at `sequence`; true when it was there.
pub(crate) async fn delete(ctx: &Context, sequence: u64) -> Result<bool, Error> {
    stream(ctx)
        .await?
        .delete_message(sequence)
        .await
        .or_else(|e| match e.kind() {
            // Already gone (purged meanwhile, or removed by an earlier replay).
            DeleteMessageErrorKind::JetStream(js)
                if js.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
            {
                Ok(false)
            }
            _ => Err(Error::nats("delete a dead letter")(e.into())),
        })
}

/// Deletes what `selector` selects (or counts it, for a dry run).
pub(crate) async fn purge(
    ctx: &Context,
    selector: &DeadLetterSelector,
    dry_run: bool,
) -> Result<u64, Error> {
    if dry_run {
        return count(ctx, selector).await;
    }
    let mut selection = Selection::open(ctx, selector).await?;
    let mut purged = 0;
    // Deleting behind the scan is safe: the scan's consumer has already read those.
    while let Some(stored) = selection.next(ctx).await? {
        if delete(ctx, stored.sequence).await? {
            purged += 1;
        }
    }
    tracing::info!(purged, "dead letters purged");
    Ok(purged)
}
