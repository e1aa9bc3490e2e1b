//! How answers are printed: tables for people, one JSON object per line for scripts. Only what
//! the API answers is printed, and the API never answers a credential.

use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{Table, presets::NOTHING};
use hookyard_proto::admin::v1::{
    AuditRecord, DeadLetterSummary, EventSummary, GetDeadLetterResponse, GetEventResponse,
    HandlerStatus, PurgeDeadLettersResponse, ReplayProgress, ReplayRecord,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

fn json_line(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING).set_header(header.to_vec());
    t
}

/// A Unix time in milliseconds as RFC 3339 (seconds), `-` for none.
fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        _ => "-".to_owned(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

pub(super) fn events(events: &[EventSummary], json: bool) {
    if json {
        return events.iter().for_each(json_line);
    }
    let mut t = table(&["ID", "SOURCE", "TYPE", "RECEIVED", "BYTES"]);
    for e in events {
        t.add_row(vec![
            e.id.clone(),
            e.source.clone(),
            or_dash(&e.event_type).to_owned(),
            time(e.received_at_ms),
            e.body_bytes.to_string(),
        ]);
    }
    println!("{t}");
}

pub(super) fn event(answer: &GetEventResponse, json: bool) {
    if json {
        return json_line(answer);
    }
    let Some(event) = &answer.event else { return };
    let s = event.summary.clone().unwrap_or_default();
    println!("id:        {}", s.id);
    println!("source:    {}", s.source);
    println!("type:      {}", or_dash(&s.event_type));
    println!("received:  {}", time(s.received_at_ms));
    println!("request:   {} {}{}", s.method, s.path, query(&event.query));
    println!("headers:");
    for h in &event.headers {
        println!("  {}: {}", h.name, h.value);
    }
    println!("body ({} bytes):", event.body.len());
    println!("  {}", String::from_utf8_lossy(&event.body));
    for handler in &answer.handlers {
        let routed = if handler.routed {
            "routed"
        } else {
            "not routed today"
        };
        println!(
            "\nhandler {} ({routed}): {}",
            handler.handler, handler.state
        );
        let mut t = table(&["ATTEMPT", "OUTCOME", "STATUS", "AT", "REPLAY", "ERROR"]);
        for a in &handler.attempts {
            t.add_row(vec![
                a.attempt.to_string(),
                a.outcome.clone(),
                status(a.status),
                time(a.at_ms),
                or_dash(&a.replay_id).to_owned(),
                or_dash(&a.error).to_owned(),
            ]);
        }
        println!("{t}");
        if !handler.calls.is_empty() {
            println!("  calls:");
            audit_table(&handler.calls);
        }
    }
}

fn query(q: &str) -> String {
    if q.is_empty() {
        String::new()
    } else {
        format!("?{q}")
    }
}

fn status(status: u32) -> String {
    if status == 0 {
        "-".to_owned()
    } else {
        status.to_string()
    }
}

pub(super) fn tail_header() {
    println!("RECEIVED              SOURCE  TYPE  ID");
}

pub(super) fn tail_line(e: &EventSummary, json: bool) {
    if json {
        return json_line(e);
    }
    println!(
        "{}  {}  {}  {}",
        time(e.received_at_ms),
        e.source,
        or_dash(&e.event_type),
        e.id
    );
}

pub(super) fn dead_letters(letters: &[DeadLetterSummary], json: bool) {
    if json {
        return letters.iter().for_each(json_line);
    }
    let mut t = table(&[
        "SEQ", "HANDLER", "EVENT", "TYPE", "REASON", "ATTEMPTS", "STATUS", "FAILED", "ERROR",
    ]);
    for d in letters {
        t.add_row(vec![
            d.sequence.to_string(),
            or_dash(&d.handler).to_owned(),
            d.event_id.clone(),
            or_dash(&d.event_type).to_owned(),
            d.reason.clone(),
            d.attempts.to_string(),
            status(d.last_status),
            time(d.failed_at_ms),
            or_dash(&d.error).to_owned(),
        ]);
    }
    println!("{t}");
}

pub(super) fn dead_letter(answer: &GetDeadLetterResponse, json: bool) {
    if json {
        return json_line(answer);
    }
    dead_letters(
        &answer.dead_letter.iter().cloned().collect::<Vec<_>>(),
        false,
    );
    if let Some(event) = &answer.event {
        println!("headers:");
        for h in &event.headers {
            println!("  {}: {}", h.name, h.value);
        }
        println!("body ({} bytes):", event.body.len());
        println!("  {}", String::from_utf8_lossy(&event.body));
    }
}

pub(super) fn purged(answer: &PurgeDeadLettersResponse, dry_run: bool, json: bool) {
    if json {
        return json_line(answer);
    }
    let verb = if dry_run { "would purge" } else { "purged" };
    println!("{verb} {} dead letter(s)", answer.purged);
}

/// The progress bar of a replay, on stderr (hidden when stderr is not a terminal).
pub(super) fn replay_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} looked at, {msg} [{elapsed}]")
    {
        bar.set_style(style);
    }
    bar
}

pub(super) fn replay_progress(bar: &ProgressBar, p: &ReplayProgress) {
    bar.set_length(p.total.max(p.scanned));
    bar.set_position(p.scanned);
    bar.set_message(format!("{} sent", p.sent));
}

pub(super) fn replay_record(r: &ReplayRecord, json: bool) {
    if json {
        return json_line(r);
    }
    let verb = if r.dry_run { "would send" } else { "sent" };
    println!(
        "replay {}: {} — {} event(s), {verb} {} work item(s), {} skipped, {} failed",
        r.id, r.what, r.events, r.work_items, r.skipped, r.failed
    );
    for h in &r.handlers {
        println!("  {}: {}", h.handler, h.work_items);
    }
    if r.dead_letters_removed > 0 {
        println!("  {} dead letter(s) removed", r.dead_letters_removed);
    }
    if !r.error.is_empty() {
        println!("  stopped early: {}", r.error);
    }
}

pub(super) fn handlers(handlers: &[HandlerStatus], json: bool) {
    if json {
        return handlers.iter().for_each(json_line);
    }
    let mut t = table(&[
        "HANDLER",
        "LAG",
        "WAITING",
        "PENDING",
        "REDELIVERED",
        "DEAD",
        "PAUSED",
        "LAST ERROR",
    ]);
    for h in handlers {
        // A pause without an end is stored as one decades away.
        let decade_ms = 10 * 365 * 24 * 3600 * 1000;
        let paused = match (h.paused, h.paused_until_ms) {
            (false, _) => "no".to_owned(),
            (true, until) if until > 0 && until < now_ms().saturating_add(decade_ms) => {
                format!("until {}", time(until))
            }
            (true, _) => "yes".to_owned(),
        };
        let last = if h.last_error.is_empty() {
            "-".to_owned()
        } else {
            format!("{} ({})", h.last_error, time(h.last_error_at_ms))
        };
        let lag = if h.consumer {
            h.lag.to_string()
        } else {
            "no worker yet".to_owned()
        };
        t.add_row(vec![
            h.name.clone(),
            lag,
            h.waiting.to_string(),
            h.pending.to_string(),
            h.redelivered.to_string(),
            h.dead_letters.to_string(),
            paused,
            last,
        ]);
    }
    println!("{t}");
}

fn audit_table(records: &[AuditRecord]) {
    let mut t = table(&[
        "AT",
        "CONNECTION",
        "HANDLER",
        "ATTEMPT",
        "METHOD",
        "URL",
        "STATUS",
        "MS",
    ]);
    for r in records {
        let outcome = if r.status > 0 {
            r.status.to_string()
        } else {
            or_dash(&r.error).to_owned()
        };
        t.add_row(vec![
            time(r.at_ms),
            r.connection.clone(),
            or_dash(&r.handler).to_owned(),
            r.attempt.to_string(),
            r.method.clone(),
            r.url.clone(),
            outcome,
            r.latency_ms.to_string(),
        ]);
    }
    println!("{t}");
}

pub(super) fn audit(records: &[AuditRecord], json: bool) {
    if json {
        return records.iter().for_each(json_line);
    }
    audit_table(records);
}
