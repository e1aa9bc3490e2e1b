//! Events in `HOOKYARD_IN`: listing by time, source and type; one event by id; the tail of what
//! is being accepted; and the redacted view operators get of an event.
//!
//! Finding an event by id: a webhook event's subject does not carry its id
//! ([`hookyard_core::streams::Topology::in_filter`]), so the `HOOKYARD_DEDUP` bucket gives the
//! time ingress accepted it, and a headers-only scan from a little before that time looks for
//! its `Hookyard-Event-Id` header — a bounded window, not the whole stream, whenever the bucket
//! still remembers the id.

use std::time::Duration;

use async_nats::jetstream;
use hookyard_core::{
    Integration,
    config::pattern_matches,
    envelope::HEADER_EVENT_ID,
    redact::{self, Declared},
};
use hookyard_proto::{
    admin::v1::{Event, EventFilter, EventSummary, Header, TailRequest},
    event::v1::Envelope,
};
use prost::Message as _;
use tokio::sync::mpsc;

use super::{
    Context, Error,
    scan::{self, Scan, Start},
};
use crate::route;

/// Stored events one page looks at, at most; the page then ends with a token to go on.
const PAGE_SCAN: u64 = 5000;
/// Stored events a lookup by id looks at, at most.
const LOOKUP_SCAN: u64 = 200_000;
/// How far the stream's clock may be from ingress's, for a lookup by id.
const CLOCK_SKEW_MS: i64 = 60_000;

/// An event read from the stream: its envelope (or what could be recovered) and position.
pub(crate) struct Stored {
    pub event: Envelope,
    pub sequence: u64,
    pub stored_at_ms: i64,
}

/// Decodes a message of `HOOKYARD_IN`; an undecodable payload keeps its id and source from
/// the headers and subject, and its bytes as the body.
pub(crate) fn stored(ctx: &Context, msg: &jetstream::Message) -> Stored {
    let (sequence, stored_at_ms) = msg
        .info()
        .map(|i| (i.stream_sequence, scan::millis(i)))
        .unwrap_or((0, 0));
    let event = Envelope::decode(msg.payload.as_ref()).unwrap_or_else(|_| Envelope {
        id: header(msg, HEADER_EVENT_ID).unwrap_or_default().to_owned(),
        source: ctx
            .topology
            .source_of_in_subject(msg.subject.as_str())
            .unwrap_or_default()
            .to_owned(),
        body: msg.payload.to_vec(),
        ..Default::default()
    });
    Stored {
        event,
        sequence,
        stored_at_ms,
    }
}

pub(crate) fn header<'a>(msg: &'a jetstream::Message, name: &str) -> Option<&'a str> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

/// The event type as today's expression reads it; empty when it gives none.
pub(crate) fn event_type(integration: &Integration, event: &Envelope) -> String {
    route::event_type(integration, event).unwrap_or_default()
}

/// Whether `event` (of type `event_type`) passes a filter's source and type.
pub(crate) fn matches(filter: &EventFilter, event: &Envelope, event_type: &str) -> bool {
    (filter.source.is_empty() || filter.source == event.source)
        && (filter.r#type.is_empty() || pattern_matches(&filter.r#type, event_type))
}

pub(crate) fn summary(stored: &Stored, event_type: String) -> EventSummary {
    let e = &stored.event;
    EventSummary {
        id: e.id.clone(),
        source: e.source.clone(),
        event_type,
        received_at_ms: e.received_at_ms,
        sequence: stored.sequence,
        body_bytes: e.body.len() as u64,
        method: e.method.clone(),
        path: e.path.clone(),
    }
}

/// The view of an event operators get: credentials in headers and query redacted.
pub(crate) fn redacted(
    integration: &Integration,
    event: &Envelope,
    summary: EventSummary,
) -> Event {
    let declared = integration
        .sources
        .get(&event.source)
        .map(Declared::of)
        .unwrap_or_default();
    let headers = event
        .headers
        .iter()
        .map(|h| {
            let (value, redacted) = redact::header(&h.name, &h.value, &declared);
            Header {
                name: h.name.clone(),
                value,
                redacted,
            }
        })
        .collect();
    Event {
        summary: Some(summary),
        query: redact::query(&event.query, &declared),
        headers,
        body: event.body.clone(),
        dedup_key: event.dedup_key.clone(),
    }
}

/// The events of a filter's range, read one at a time, with whether each passes the filter.
pub(crate) struct Range {
    scan: Scan,
    filter: EventFilter,
}

/// One event of a [`Range`].
pub(crate) struct Seen {
    pub stored: Stored,
    pub event_type: String,
    /// Whether it passes the filter's source and type.
    pub matches: bool,
}

impl Range {
    /// Opens the range of `filter` from `start` (its `since_ms`, or a page token).
    pub(crate) async fn open(
        ctx: &Context,
        filter: &EventFilter,
        start: Start,
    ) -> Result<Self, Error> {
        scan::check_range(filter.since_ms, filter.until_ms)?;
        let source = (!filter.source.is_empty()).then_some(filter.source.as_str());
        let subjects = ctx.topology.in_filter(source);
        let stream = ctx.topology.in_stream();
        let scan = Scan::open(&ctx.js, &stream, subjects, start, false).await?;
        Ok(Self {
            scan,
            filter: filter.clone(),
        })
    }

    /// Stored events the range will look at, at most.
    pub(crate) fn len(&self) -> u64 {
        self.scan.len()
    }

    /// The next event, `None` past the end or past `until_ms`.
    pub(crate) async fn next(&mut self, ctx: &Context) -> Result<Option<Seen>, Error> {
        let Some(msg) = self.scan.next().await? else {
            return Ok(None);
        };
        let stored = stored(ctx, &msg);
        if self.filter.until_ms > 0 && stored.stored_at_ms >= self.filter.until_ms {
            return Ok(None);
        }
        let event_type = event_type(&ctx.table.current(), &stored.event);
        let matches = matches(&self.filter, &stored.event, &event_type);
        Ok(Some(Seen {
            stored,
            event_type,
            matches,
        }))
    }
}

/// A page of events, oldest first.
pub(crate) async fn list(
    ctx: &Context,
    filter: &EventFilter,
    page_size: u32,
    token: &str,
) -> Result<(Vec<EventSummary>, String, u64), Error> {
    let start = scan::page_start(token, filter.since_ms)?;
    let mut range = Range::open(ctx, filter, start).await?;
    let (size, mut events, mut scanned) = (scan::page_size(page_size), Vec::new(), 0);
    while let Some(seen) = range.next(ctx).await? {
        scanned += 1;
        if seen.matches {
            events.push(summary(&seen.stored, seen.event_type));
        }
        if events.len() == size || scanned == PAGE_SCAN {
            return Ok((events, scan::token_after(seen.stored.sequence), scanned));
        }
    }
    Ok((events, String::new(), scanned))
}

/// The stored event with id `id`.
pub(crate) async fn find(ctx: &Context, id: &str) -> Result<Stored, Error> {
    if id.is_empty() || id.len() > 256 {
        return Err(Error::Invalid("an event id has 1 to 256 characters"));
    }
    let hint = accepted_at(ctx, id).await;
    let start = match hint {
        Some(ms) => Start::Time(ms - CLOCK_SKEW_MS),
        _ => Start::All,
    };
    let subjects = ctx.topology.in_filter(None);
    let stream = ctx.topology.in_stream();
    let mut scan = Scan::open(&ctx.js, &stream, subjects, start, true).await?;
    let mut looked = 0;
    while let Some(msg) = scan.next().await? {
        let (sequence, at) = msg
            .info()
            .map(|i| (i.stream_sequence, scan::millis(i)))
            .unwrap_or((0, 0));
        if header(&msg, HEADER_EVENT_ID) == Some(id) {
            let stream = ctx
                .js
                .get_stream(&stream)
                .await
                .map_err(|e| Error::nats("read the event")(e.into()))?;
            let raw = stream
                .get_raw_message(sequence)
                .await
                .map_err(|e| Error::nats("read the event")(e.into()))?;
            let event = Envelope::decode(raw.payload.as_ref()).unwrap_or_else(|_| Envelope {
                id: id.to_owned(),
                body: raw.payload.to_vec(),
                ..Default::default()
            });
            return Ok(Stored {
                event,
                sequence,
                stored_at_ms: at,
            });
        }
        looked += 1;
        let past_hint = hint.is_some_and(|ms| at > ms + CLOCK_SKEW_MS);
        if past_hint || looked >= LOOKUP_SCAN {
            break;
        }
    }
    Err(Error::NotFound {
        kind: "event",
        id: id.to_owned(),
    })
}

/// When ingress accepted `id`, from the dedup bucket (`None` when it does not know).
async fn accepted_at(ctx: &Context, id: &str) -> Option<i64> {
    let bucket = ctx
        .js
        .get_key_value(ctx.topology.dedup_bucket())
        .await
        .ok()?;
    let value = tokio::time::timeout(Duration::from_secs(5), bucket.get(id))
        .await
        .ok()?
        .ok()??;
    std::str::from_utf8(&value).ok()?.trim().parse().ok()
}

/// Sends every event accepted from now on that passes `request`'s filter, until the receiver
/// goes away or the router stops.
pub(crate) async fn tail(
    ctx: std::sync::Arc<Context>,
    request: TailRequest,
    out: mpsc::Sender<Result<EventSummary, Error>>,
) {
    use futures::StreamExt as _;
    let filter = EventFilter {
        source: request.source,
        r#type: request.r#type,
        ..Default::default()
    };
    let mut messages = match open_tail(&ctx, &filter).await {
        Ok(messages) => messages,
        Err(error) => {
            let _ = out.send(Err(error)).await;
            return;
        }
    };
    loop {
        let next = tokio::select! {
            () = ctx.stop.cancelled() => return,
            () = out.closed() => return,
            next = messages.next() => next,
        };
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                let _ = out.send(Err(Error::nats("tail")(e.into()))).await;
                return;
            }
            None => return,
        };
        let stored = stored(&ctx, &msg);
        let kind = event_type(&ctx.table.current(), &stored.event);
        if matches(&filter, &stored.event, &kind)
            && out.send(Ok(summary(&stored, kind))).await.is_err()
        {
            return;
        }
    }
}

async fn open_tail(
    ctx: &Context,
    filter: &EventFilter,
) -> Result<jetstream::consumer::pull::Ordered, Error> {
    let source = (!filter.source.is_empty()).then_some(filter.source.as_str());
    let stream = ctx
        .js
        .get_stream(ctx.topology.in_stream())
        .await
        .map_err(|e| Error::nats("read the stream")(e.into()))?;
    stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subjects: ctx.topology.in_filter(source),
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::nats("tail")(e.into()))?
        .messages()
        .await
        .map_err(|e| Error::nats("tail")(e.into()))
}
