//! What each handler did with one event: the workers' outcome records
//! (`hookyard.audit.worker.<handler>.<outcome>.<event id>`) and egress's call records
//! (`hookyard.audit.egress.<connection>.<event id>`), both found by the event id in the subject.

use std::collections::BTreeMap;

use hookyard_proto::{
    admin::v1::{Attempt, AuditRecord, HandlerDeliveries},
    event::v1::{DeliveryOutcome, delivery_outcome::Outcome},
};
use prost::Message as _;

use super::{
    Context, Error, audit,
    scan::{Scan, Start},
};

/// Records of one kind read for one event, at most.
const RECORDS: u64 = 2000;

/// One entry per handler in `routed` (in that order) or with a record, then the others by name.
pub(crate) async fn of_event(
    ctx: &Context,
    event_id: &str,
    routed: &[String],
) -> Result<Vec<HandlerDeliveries>, Error> {
    let mut by_handler: BTreeMap<String, HandlerDeliveries> = BTreeMap::new();
    for (handler, attempt) in outcomes(ctx, event_id).await? {
        entry(&mut by_handler, &handler).attempts.push(attempt);
    }
    for call in calls(ctx, event_id).await? {
        let handler = call.handler.clone();
        // Calls made outside a handler (connection tests) belong to no delivery.
        if handler.is_empty() {
            continue;
        }
        entry(&mut by_handler, &handler).calls.push(call);
    }
    let mut out = Vec::with_capacity(by_handler.len() + routed.len());
    for name in routed {
        let mut deliveries = by_handler.remove(name).unwrap_or_else(|| empty(name));
        deliveries.routed = true;
        out.push(deliveries);
    }
    out.extend(by_handler.into_values());
    for deliveries in &mut out {
        deliveries.state = state(&deliveries.attempts).to_owned();
    }
    Ok(out)
}

fn empty(name: &str) -> HandlerDeliveries {
    HandlerDeliveries {
        handler: name.to_owned(),
        ..Default::default()
    }
}

fn entry<'a>(
    map: &'a mut BTreeMap<String, HandlerDeliveries>,
    handler: &str,
) -> &'a mut HandlerDeliveries {
    map.entry(handler.to_owned())
        .or_insert_with(|| empty(handler))
}

/// Where a handler stands after its latest recorded attempt.
fn state(attempts: &[Attempt]) -> &'static str {
    match attempts
        .iter()
        .max_by_key(|a| a.at_ms)
        .map(|a| a.outcome.as_str())
    {
        Some("handled") => "handled",
        Some("retry") => "retrying",
        Some("dead_letter") => "dead_lettered",
        _ => "no_outcome",
    }
}

pub(crate) fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Handled => "handled",
        Outcome::Retry => "retry",
        Outcome::DeadLetter => "dead_letter",
        Outcome::Unspecified => "unspecified",
    }
}

pub(crate) fn attempt(record: &DeliveryOutcome) -> Attempt {
    Attempt {
        attempt: record.attempt,
        outcome: outcome_label(record.outcome()).to_owned(),
        status: record.status,
        error: record.error.clone(),
        reason: record.reason.clone(),
        retry_in_ms: record.retry_in_ms,
        replay_id: record.replay_id.clone(),
        at_ms: record.at_ms,
    }
}

/// Up to [`RECORDS`] records of the audit stream under `filter`, as `read` makes them of a message.
async fn records<T>(
    ctx: &Context,
    filter: String,
    read: impl Fn(&async_nats::jetstream::Message) -> Option<T>,
) -> Result<Vec<T>, Error> {
    let stream = ctx.topology.audit_stream();
    let mut scan = Scan::open(&ctx.js, &stream, vec![filter], Start::All, false).await?;
    let mut out = Vec::new();
    while let Some(msg) = scan.next().await? {
        out.extend(read(&msg));
        if out.len() as u64 >= RECORDS {
            break;
        }
    }
    Ok(out)
}

async fn outcomes(ctx: &Context, event_id: &str) -> Result<Vec<(String, Attempt)>, Error> {
    let filter = ctx.topology.audit_worker_filter(None, None, Some(event_id));
    records(ctx, filter, |msg| {
        let record = DeliveryOutcome::decode(msg.payload.as_ref()).ok()?;
        (record.event_id == event_id).then(|| (record.handler.clone(), attempt(&record)))
    })
    .await
}

async fn calls(ctx: &Context, event_id: &str) -> Result<Vec<AuditRecord>, Error> {
    let filter = ctx.topology.audit_egress_filter(None, Some(event_id));
    records(ctx, filter, |msg| {
        audit::record(msg).filter(|r| r.event_id == event_id)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(outcome: &str, at_ms: i64) -> Attempt {
        Attempt {
            outcome: outcome.to_owned(),
            at_ms,
            ..Default::default()
        }
    }

    #[test]
    fn the_latest_attempt_decides_the_state() {
        assert_eq!(state(&[]), "no_outcome");
        assert_eq!(state(&[at("retry", 1), at("handled", 2)]), "handled");
        assert_eq!(state(&[at("handled", 3), at("dead_letter", 2)]), "handled");
        assert_eq!(
            state(&[at("retry", 1), at("dead_letter", 2)]),
            "dead_lettered"
        );
        assert_eq!(state(&[at("retry", 1)]), "retrying");
    }
}
