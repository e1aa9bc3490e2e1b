//! `ListAudit`: egress's records of outbound attempts (JSON on
//! `hookyard.audit.egress.<connection>.<event id>`), by event, connection and time, paged.

use async_nats::jetstream;
use hookyard_proto::admin::v1::{AuditRecord, ListAuditRequest};
use serde::Deserialize;

use super::{
    Context, Error,
    scan::{self, Scan},
};

/// Records one page looks at, at most.
const PAGE_SCAN: u64 = 5000;

/// Egress's record as it stores it (its URL is redacted already).
#[derive(Deserialize)]
struct Stored {
    connection: String,
    method: String,
    url: String,
    attempt: u32,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    handler: Option<String>,
    #[serde(default)]
    status: Option<u32>,
    #[serde(default)]
    error: Option<String>,
    latency_ms: u64,
    at_ms: i64,
}

/// An egress record, `None` when the message is not one.
pub(crate) fn record(msg: &jetstream::Message) -> Option<AuditRecord> {
    let stored: Stored = serde_json::from_slice(&msg.payload).ok()?;
    Some(AuditRecord {
        sequence: msg.info().map(|i| i.stream_sequence).unwrap_or(0),
        connection: stored.connection,
        method: stored.method,
        url: stored.url,
        attempt: stored.attempt,
        event_id: stored.event_id.unwrap_or_default(),
        handler: stored.handler.unwrap_or_default(),
        status: stored.status.unwrap_or(0),
        error: stored.error.unwrap_or_default(),
        latency_ms: stored.latency_ms,
        at_ms: stored.at_ms,
    })
}

/// A page of records, oldest first.
pub(crate) async fn list(
    ctx: &Context,
    request: &ListAuditRequest,
) -> Result<(Vec<AuditRecord>, String), Error> {
    scan::check_range(request.since_ms, request.until_ms)?;
    let start = scan::page_start(&request.page_token, request.since_ms)?;
    let part = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (connection, event) = (part(&request.connection), part(&request.event_id));
    let filter = ctx
        .topology
        .audit_egress_filter(connection.as_deref(), event.as_deref());
    let mut scan = Scan::open(
        &ctx.js,
        &ctx.topology.audit_stream(),
        vec![filter],
        start,
        false,
    )
    .await?;
    let (size, mut records, mut scanned) = (scan::page_size(request.page_size), Vec::new(), 0);
    while let Some(msg) = scan.next().await? {
        let info = msg.info().map(|i| (i.stream_sequence, scan::millis(i)));
        let (sequence, at) = info.unwrap_or((0, 0));
        if request.until_ms > 0 && at >= request.until_ms {
            return Ok((records, String::new()));
        }
        scanned += 1;
        // The subject carries hashed tokens for unusual ids: the record itself decides.
        if let Some(record) = record(&msg).filter(|r| {
            connection.as_ref().is_none_or(|c| *c == r.connection)
                && event.as_ref().is_none_or(|e| *e == r.event_id)
        }) {
            records.push(record);
        }
        if records.len() == size || scanned == PAGE_SCAN {
            return Ok((records, scan::token_after(sequence)));
        }
    }
    Ok((records, String::new()))
}
