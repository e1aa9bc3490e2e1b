//! What a sender is answered once its event is stored: a source's `reply` (status, headers and
//! body, templated with the event id) and, in `sync` mode, the reply a handler's `reply` step
//! sends back within a deadline.
//!
//! Templates know two placeholders, `{event_id}` and `{source}`; `{{` and `}}` stand for literal
//! braces. Anything else in braces is refused at start, so a typo never reaches a sender.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{Problem, validate::push};
use crate::expr::Expr;

/// How a source answers an accepted event (default: 202 with `{"id": "<event id>"}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// `async` (default): answer as soon as the event is stored. `sync`: wait up to `deadline`
    /// for a handler's `reply` step and answer with it; past the deadline answer as in `async`
    /// (the event is processed either way).
    #[serde(default)]
    pub mode: ReplyMode,
    /// Longest wait for a handler's reply in `sync` mode, counted from the request's arrival
    /// (default `5s`, at most `5m`).
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// HTTP status of the answer, 200–299 (default 202).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers, values templated, e.g. `{ "Location" = "/events/{event_id}" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body template, e.g. `"{\"received\":true,\"id\":\"{event_id}\"}"` (default
    /// `{"id":"<event id>"}`, as JSON). Without a `Content-Type` header a templated body is sent
    /// as `text/plain; charset=utf-8`.
    pub body: Option<String>,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            mode: ReplyMode::Async,
            deadline: default_deadline(),
            status: default_status(),
            headers: BTreeMap::new(),
            body: None,
        }
    }
}

/// When the sender gets its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyMode {
    /// Once the event is stored.
    #[default]
    Async,
    /// When a handler's `reply` step answers, or at the deadline.
    Sync,
}

/// A handler step that answers the sender of a `sync` source (ignored for other sources: nobody
/// waits for it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyStep {
    /// Name of the step (`$steps.<name>.status` is the status sent).
    #[serde(default)]
    pub name: Option<String>,
    /// Run the step only when this jq filter is true.
    #[serde(default)]
    pub when: Option<Expr>,
    /// HTTP status, 200–599 (default 200).
    #[serde(default = "default_step_status")]
    pub status: u16,
    /// Response headers, each a string or an expression.
    #[serde(default)]
    pub headers: BTreeMap<String, Expr>,
    /// Response body, usually `{ jq = "…" }` over the event; default empty.
    pub body: Option<Expr>,
}

/// A part of a reply template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    /// Text sent as it is.
    Text(&'a str),
    /// `{event_id}`.
    EventId,
    /// `{source}`.
    Source,
}

/// Splits a reply template into its parts, or names the first unknown placeholder.
pub fn template_parts(template: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let Some(at) = rest.find(['{', '}']) else {
            parts.push(TemplatePart::Text(rest));
            break;
        };
        if at > 0 {
            parts.push(TemplatePart::Text(&rest[..at]));
        }
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("{{") {
            parts.push(TemplatePart::Text("{"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            parts.push(TemplatePart::Text("}"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{event_id}") {
            parts.push(TemplatePart::EventId);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{source}") {
            parts.push(TemplatePart::Source);
            rest = after;
        } else {
            let end = rest.find('}').map_or(rest.len(), |e| e + 1).min(40);
            return Err(format!(
                "unknown placeholder {:?}: use {{event_id}} or {{source}}, and {{{{ or }}}} for a brace",
                rest.get(..end).unwrap_or(rest)
            ));
        }
    }
    Ok(parts)
}

/// Fills a template that [`template_parts`] accepted (an unknown placeholder is left as is).
pub fn render(template: &str, event_id: &str, source: &str) -> String {
    match template_parts(template) {
        Ok(parts) => parts
            .iter()
            .map(|p| match p {
                TemplatePart::Text(t) => *t,
                TemplatePart::EventId => event_id,
                TemplatePart::Source => source,
            })
            .collect(),
        Err(_) => template.to_owned(),
    }
}

/// Headers a reply may not set: framing and connection management belong to the server.
const RESERVED_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Whether a reply may set the header `name` (a valid token, not framing or hop-by-hop).
pub fn allowed_header(name: &str) -> bool {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    token && !RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

/// Problems with a source's `reply`.
pub(super) fn check_reply(problems: &mut Vec<Problem>, key: &str, reply: &Reply) {
    if !(200..=299).contains(&reply.status) {
        push(
            problems,
            format!("{key}.status"),
            "must be a 2xx status: the event is stored when the reply is sent",
        );
    }
    if reply.mode == ReplyMode::Sync
        && (reply.deadline.is_zero() || reply.deadline > Duration::from_secs(300))
    {
        push(
            problems,
            format!("{key}.deadline"),
            "must be more than 0 and at most 5m",
        );
    }
    for (name, value) in &reply.headers {
        let hkey = format!("{key}.headers.{name}");
        if !allowed_header(name) {
            push(
                problems,
                hkey.clone(),
                "not a header a reply may set (invalid name, or framing/hop-by-hop)",
            );
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            push(
                problems,
                hkey.clone(),
                "header values must not hold control characters",
            );
        }
        if let Err(e) = template_parts(value) {
            push(problems, hkey, e);
        }
    }
    if let Some(body) = &reply.body
        && let Err(e) = template_parts(body)
    {
        push(problems, format!("{key}.body"), e);
    }
}

/// Problems with a handler's `reply` step.
pub(super) fn check_reply_step(problems: &mut Vec<Problem>, key: &str, step: &ReplyStep) {
    if !(200..=599).contains(&step.status) {
        push(
            problems,
            format!("{key}.status"),
            "must be an HTTP status from 200 to 599",
        );
    }
    for name in step.headers.keys() {
        if !allowed_header(name) {
            push(
                problems,
                format!("{key}.headers.{name}"),
                "not a header a reply may set (invalid name, or framing/hop-by-hop)",
            );
        }
    }
}

fn default_deadline() -> Duration {
    Duration::from_secs(5)
}
fn default_status() -> u16 {
    202
}
fn default_step_status() -> u16 {
    200
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_placeholders_and_escape_braces() {
        assert_eq!(
            render(
                r#"{{"id":"{event_id}","from":"{source}"}}"#,
                "evt_1",
                "shop"
            ),
            r#"{"id":"evt_1","from":"shop"}"#
        );
        assert_eq!(render("ok", "evt_1", "shop"), "ok");
        assert_eq!(render("", "evt_1", "shop"), "");
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_refused() {
        for bad in ["{id}", "{event_id", "x}", "{", "{\"a\":1}"] {
            assert!(template_parts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn framing_and_invalid_header_names_are_refused() {
        assert!(allowed_header("Location"));
        assert!(allowed_header("X-Request-Id"));
        for bad in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "",
            "Bad Name",
            "a:b",
        ] {
            assert!(!allowed_header(bad), "{bad}");
        }
    }
}
