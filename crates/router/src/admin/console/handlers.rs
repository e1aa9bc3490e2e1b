//! The handlers page: each handler's rate and errors over the last minute, its consumer state
//! (lag, pending, waiting, redelivered), its dead letters and last error, with pause (for a
//! while or until resumed) and resume.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Form,
    extract::rejection::FormRejection,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use hookyard_proto::admin::v1::HandlerStatus;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, page, session::Signed};
use crate::admin::handlers;

/// The longest pause the form takes, in minutes (a week).
const MAX_PAUSE_MINUTES: u64 = 7 * 24 * 60;

pub(crate) async fn list(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
) -> Response {
    let all = match handlers::list(&console.ctx).await {
        Ok(all) => all,
        Err(error) => return page::failure(&error),
    };
    let content = html! {
        h1 { "Handlers" }
        p.muted { "Rate and errors: deliveries finished, and failed, in the last minute. Lag: work not yet delivered to a worker. Waiting: work held back while the handler is at its cap in the work stream." }
        table.handlers {
            tr { th { "Handler" } th { "Worker bound" } th { "Rate" } th { "Errors" } th { "Lag" } th { "Pending" } th { "Waiting" }
                 th { "Redelivered" } th { "Dead letters" } th { "Last error" } th { "State" } th { "" } }
            @for h in &all { (row(&signed, h)) }
        }
    };
    page::layout("Handlers", Some(&signed), content).into_response()
}

fn row(signed: &Signed, h: &HandlerStatus) -> Markup {
    html! {
        tr id=(format!("handler-{}", h.name)) {
            td { (h.name) } td { @if h.consumer { "yes" } @else { "no" } }
            td.rate { (h.deliveries_last_minute) "/min" }
            td.errors { (h.failures_last_minute) "/min" }
            td.lag { (h.lag) } td { (h.pending) } td { (h.waiting) } td { (h.redelivered) }
            td { a href=(format!("/console/dead-letters?handler={}", h.name)) { (h.dead_letters) } }
            td { @if !h.last_error.is_empty() { (h.last_error) br; span.muted { (page::time(h.last_error_at_ms)) } } }
            td.state {
                @if h.paused {
                    "paused"
                    @if handlers::until_resumed(h.paused_until_ms) { " until resumed" }
                    @else if h.paused_until_ms > 0 { " until " (page::time(h.paused_until_ms)) }
                } @else { "running" }
            }
            td {
                @if h.paused {
                    form.inline method="post" action=(format!("/console/handlers/{}/resume", h.name)) {
                        (page::csrf(signed))
                        button type="submit" class="resume" { "Resume" }
                    }
                } @else if h.consumer {
                    form.inline method="post" action=(format!("/console/handlers/{}/pause", h.name)) {
                        (page::csrf(signed))
                        input type="number" name="minutes" min="1" max=(MAX_PAUSE_MINUTES) placeholder="minutes" title="empty: until resumed";
                        " "
                        button type="submit" class="pause" { "Pause" }
                    }
                }
            }
        }
    }
}

/// The pause form (its `csrf` field is the session guard's); an empty `minutes` pauses until
/// resumed.
#[derive(Deserialize)]
pub(crate) struct Pause {
    #[serde(default)]
    minutes: String,
}

fn pause_for(minutes: &str) -> Result<Option<Duration>, String> {
    let minutes = minutes.trim();
    if minutes.is_empty() {
        return Ok(None);
    }
    match minutes.parse::<u64>() {
        Ok(m) if (1..=MAX_PAUSE_MINUTES).contains(&m) => Ok(Some(Duration::from_secs(m * 60))),
        _ => Err(format!(
            "a pause lasts from 1 to {MAX_PAUSE_MINUTES} minutes, or until resumed"
        )),
    }
}

pub(crate) async fn pause(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    form: Result<Form<Pause>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return page::refusal(StatusCode::BAD_REQUEST, "malformed pause form");
    };
    let duration = match pause_for(&form.minutes) {
        Ok(duration) => duration,
        Err(problem) => return page::refusal(StatusCode::BAD_REQUEST, &problem),
    };
    match handlers::pause(&console.ctx, &name, duration).await {
        Ok(_) => Redirect::to("/console/handlers").into_response(),
        Err(error) => page::failure(&error),
    }
}

pub(crate) async fn resume(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
) -> Response {
    match handlers::resume(&console.ctx, &name).await {
        Ok(_) => Redirect::to("/console/handlers").into_response(),
        Err(error) => page::failure(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_bounded_minutes_or_until_resumed() {
        assert!(matches!(pause_for(""), Ok(None)));
        assert!(matches!(pause_for("5"), Ok(Some(d)) if d == Duration::from_secs(300)));
        for refused in ["0", "-1", "x", "99999999"] {
            assert!(pause_for(refused).is_err(), "{refused}");
        }
    }
}
