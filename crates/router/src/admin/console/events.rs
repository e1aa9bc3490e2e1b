//! The events pages: a search by source, type and time over `HOOKYARD_IN`, and one event with
//! its (redacted) request and every handler's deliveries.

use std::sync::Arc;

use axum::{
    Extension,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hookyard_proto::admin::v1::{EventFilter, EventSummary, GetEventResponse, HandlerDeliveries};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, page, session::Signed};
use crate::admin::{events, service};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Search {
    #[serde(default)]
    source: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    page_token: String,
}

pub(crate) async fn list(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
    search: Result<Query<Search>, QueryRejection>,
) -> Response {
    let Ok(Query(search)) = search else {
        return page::refusal(
            StatusCode::BAD_REQUEST,
            "unknown or malformed search fields",
        );
    };
    let (since_ms, until_ms) = match (
        page::parse_time(&search.since),
        page::parse_time(&search.until),
    ) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(problem), _) | (_, Err(problem)) => {
            return page::refusal(StatusCode::BAD_REQUEST, &problem);
        }
    };
    let filter = EventFilter {
        source: search.source.clone(),
        r#type: search.event_type.clone(),
        since_ms,
        until_ms,
    };
    let (found, next, scanned) =
        match events::list(&console.ctx, &filter, 0, &search.page_token).await {
            Ok(page) => page,
            Err(error) => return page::failure(&error),
        };
    let content = html! {
        h1 { "Events" }
        (search_form(&search))
        p.muted { (found.len()) " found among " (scanned) " scanned" }
        (table(&found))
        @if !next.is_empty() {
            p { a href=(next_link(&search, &next)) { "Next page" } }
        }
    };
    page::layout("Events", Some(&signed), content).into_response()
}

fn search_form(search: &Search) -> Markup {
    html! {
        form method="get" action="/console/events" {
            label { "Source " input name="source" value=(search.source); } " "
            label { "Type " input name="type" value=(search.event_type) placeholder="order.*"; } " "
            label { "Since (UTC) " input type="datetime-local" step="1" name="since" value=(search.since); } " "
            label { "Until (UTC) " input type="datetime-local" step="1" name="until" value=(search.until); } " "
            button type="submit" { "Search" }
        }
    }
}

fn next_link(search: &Search, next: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("source", &search.source)
        .append_pair("type", &search.event_type)
        .append_pair("since", &search.since)
        .append_pair("until", &search.until)
        .append_pair("page_token", next)
        .finish();
    format!("/console/events?{query}")
}

fn table(found: &[EventSummary]) -> Markup {
    html! {
        table.events {
            tr { th { "Received" } th { "Event" } th { "Source" } th { "Type" } th { "Request" } th { "Bytes" } }
            @for e in found {
                tr {
                    td { (page::time(e.received_at_ms)) }
                    td { a href=(format!("/console/events/{}", e.id)) { (e.id) } }
                    td { (e.source) }
                    td { (e.event_type) }
                    td { (e.method) " " (e.path) }
                    td { (e.body_bytes) }
                }
            }
        }
    }
}

pub(crate) async fn show(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    match service::get_event(&console.ctx, &id).await {
        Ok(event) => page::layout(&id, Some(&signed), event_page(&event)).into_response(),
        Err(error) => page::failure(&error),
    }
}

fn event_page(found: &GetEventResponse) -> Markup {
    let event = found.event.clone().unwrap_or_default();
    let summary = event.summary.clone().unwrap_or_default();
    html! {
        h1 { "Event " (summary.id) }
        table {
            tr { th { "Source" } td { (summary.source) } }
            tr { th { "Type" } td { (summary.event_type) } }
            tr { th { "Received" } td { (page::time(summary.received_at_ms)) } }
            tr { th { "Request" } td { (summary.method) " " (summary.path)
                @if !event.query.is_empty() { "?" (event.query) } } }
            tr { th { "Dedup key" } td { (event.dedup_key) } }
            tr { th { "Stream sequence" } td { (summary.sequence) } }
        }
        h2 { "Headers" }
        table.headers {
            @for h in &event.headers {
                tr { th { (h.name) } td { (h.value) @if h.redacted { " " span.muted { "(redacted)" } } } }
            }
        }
        h2 { "Body" }
        (page::body(&event.body))
        h2 { "Deliveries" }
        @if found.handlers.is_empty() { p.muted { "No handler takes this event." } }
        @for handler in &found.handlers { (deliveries(handler)) }
    }
}

fn deliveries(handler: &HandlerDeliveries) -> Markup {
    html! {
        section.handler id=(format!("handler-{}", handler.handler)) {
            h3 { (handler.handler) ": " span.state { (handler.state) }
                @if !handler.routed { " " span.muted { "(not routed there today)" } } }
            table.attempts {
                tr { th { "Attempt" } th { "At" } th { "Outcome" } th { "Status" } th { "Error" } th { "Reason" } th { "Replay" } }
                @for a in &handler.attempts {
                    tr {
                        td { (a.attempt) } td { (page::time(a.at_ms)) } td { (a.outcome) }
                        td { @if a.status > 0 { (a.status) } } td { (a.error) } td { (a.reason) }
                        td { (a.replay_id) }
                    }
                }
            }
            @if !handler.calls.is_empty() {
                h4 { "Partner calls (egress audit)" }
                table.calls {
                    tr { th { "At" } th { "Connection" } th { "Request" } th { "Attempt" } th { "Answer" } th { "Error" } th { "Latency" } }
                    @for c in &handler.calls {
                        tr {
                            td { (page::time(c.at_ms)) } td { (c.connection) }
                            td { (c.method) " " (c.url) } td { (c.attempt) }
                            td.answer { @if c.status > 0 { (c.status) } @else { "no answer" } }
                            td { (c.error) } td { (c.latency_ms) " ms" }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hookyard_proto::admin::v1::{Event, Header};

    use super::*;

    #[test]
    fn an_event_page_escapes_what_the_sender_sent() {
        let found = GetEventResponse {
            event: Some(Event {
                summary: Some(EventSummary {
                    id: "evt_1".to_owned(),
                    ..Default::default()
                }),
                headers: vec![Header {
                    name: "X-Evil".to_owned(),
                    value: "<img src=x onerror=alert(1)>".to_owned(),
                    redacted: false,
                }],
                body: b"<script>alert(1)</script>".to_vec(),
                ..Default::default()
            }),
            handlers: Vec::new(),
        };
        let shown = event_page(&found).into_string();
        assert!(
            !shown.contains("<script>") && !shown.contains("<img"),
            "{shown}"
        );
        assert!(
            shown.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{shown}"
        );
    }
}
