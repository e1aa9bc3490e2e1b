//! The dead letters page: the letters of `HOOKYARD_DLQ` by handler and reason, each with a
//! replay (back to its handler, the letter deleted once its work item is stored) and a purge.

use std::sync::Arc;

use axum::{
    Extension, Form,
    extract::rejection::FormRejection,
    extract::{Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hookyard_proto::admin::v1::{
    DeadLetterSelector, DeadLetterSummary, ListDeadLettersRequest, ReplayRecord, ReplayRequest,
    replay_request::What,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, page, session::Signed};
use crate::admin::{dead, replay};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    #[serde(default)]
    handler: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    page_token: String,
}

pub(crate) async fn list(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let Ok(Query(filter)) = filter else {
        return page::refusal(
            StatusCode::BAD_REQUEST,
            "unknown or malformed filter fields",
        );
    };
    let request = ListDeadLettersRequest {
        handler: filter.handler.clone(),
        reason: filter.reason.clone(),
        page_token: filter.page_token.clone(),
        ..Default::default()
    };
    let (letters, next) = match dead::list(&console.ctx, &request).await {
        Ok(page) => page,
        Err(error) => return page::failure(&error),
    };
    let content = html! {
        h1 { "Dead letters" }
        form method="get" action="/console/dead-letters" {
            label { "Handler " input name="handler" value=(filter.handler); } " "
            label { "Reason " input name="reason" value=(filter.reason) placeholder="retries_exhausted"; } " "
            button type="submit" { "Filter" }
        }
        (table(&signed, &letters))
        @if !next.is_empty() {
            p { a href=(next_link(&filter, &next)) { "Next page" } }
        }
    };
    page::layout("Dead letters", Some(&signed), content).into_response()
}

fn next_link(filter: &Filter, next: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("handler", &filter.handler)
        .append_pair("reason", &filter.reason)
        .append_pair("page_token", next)
        .finish();
    format!("/console/dead-letters?{query}")
}

fn table(signed: &Signed, letters: &[DeadLetterSummary]) -> Markup {
    html! {
        @if letters.is_empty() { p.muted { "No dead letters." } }
        @else {
            table.dead-letters {
                tr { th { "#" } th { "" } th { "Failed" } th { "Event" } th { "Handler" } th { "Type" } th { "Reason" }
                     th { "Attempts" } th { "Last status" } th { "Error" } }
                @for l in letters {
                    tr id=(format!("dead-{}", l.sequence)) {
                        td { (l.sequence) }
                        td.actions {
                            (action(signed, "replay", "Replay", l.sequence))
                            " "
                            (action(signed, "purge", "Purge", l.sequence))
                        }
                        td { (page::time(l.failed_at_ms)) }
                        td { a href=(format!("/console/events/{}", l.event_id)) { (l.event_id) } }
                        td { (l.handler) } td { (l.event_type) } td { (l.reason) } td { (l.attempts) }
                        td { @if l.last_status > 0 { (l.last_status) } } td { (l.error) }
                    }
                }
            }
        }
    }
}

fn action(signed: &Signed, what: &str, label: &str, sequence: u64) -> Markup {
    html! {
        form.inline method="post" action=(format!("/console/dead-letters/{what}")) {
            (page::csrf(signed))
            input type="hidden" name="sequence" value=(sequence);
            button type="submit" class=(what) { (label) }
        }
    }
}

/// A form naming one dead letter (its `csrf` field is the session guard's).
#[derive(Deserialize)]
pub(crate) struct Chosen {
    sequence: u64,
}

fn chosen(form: Result<Form<Chosen>, FormRejection>) -> Option<DeadLetterSelector> {
    let Form(form) = form.ok()?;
    Some(DeadLetterSelector {
        sequences: vec![form.sequence],
        ..Default::default()
    })
}

fn not_chosen() -> Response {
    page::refusal(
        StatusCode::BAD_REQUEST,
        "a dead letter is chosen by its sequence number",
    )
}

pub(crate) async fn replay(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
    form: Result<Form<Chosen>, FormRejection>,
) -> Response {
    let Some(selector) = chosen(form) else {
        return not_chosen();
    };
    let request = ReplayRequest {
        what: Some(What::DeadLetters(selector)),
        ..Default::default()
    };
    let record = match replay::to_end(console.ctx.clone(), request).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return page::refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the replay ended without a record",
            );
        }
        Err(error) => return page::failure(&error),
    };
    page::layout("Replayed", Some(&signed), replayed(&record)).into_response()
}

fn replayed(record: &ReplayRecord) -> Markup {
    html! {
        h1 { "Replay " (record.id) }
        p.notice.replayed {
            (record.work_items) " work item(s) sent, "
            (record.dead_letters_removed) " dead letter(s) removed, "
            (record.skipped) " skipped, " (record.failed) " failed."
        }
        @if !record.error.is_empty() { p.problem { (record.error) } }
        p { a href="/console/dead-letters" { "Back to the dead letters" } }
    }
}

pub(crate) async fn purge(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
    form: Result<Form<Chosen>, FormRejection>,
) -> Response {
    let Some(selector) = chosen(form) else {
        return not_chosen();
    };
    let purged = match dead::purge(&console.ctx, &selector, false).await {
        Ok(purged) => purged,
        Err(error) => return page::failure(&error),
    };
    let content = html! {
        h1 { "Purged" }
        p.notice.purged { (purged) " dead letter(s) deleted." }
        p { a href="/console/dead-letters" { "Back to the dead letters" } }
    };
    page::layout("Purged", Some(&signed), content).into_response()
}
