//! The console's layout and the pieces every page shows the same way: times, bodies, failures,
//! and the headers that keep pages out of frames, caches and other origins' scripts.

use std::time::{Duration, UNIX_EPOCH};

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use base64::Engine as _;
use maud::{DOCTYPE, Markup, html};

use super::session::Signed;
use crate::admin::Error;

/// Bodies are shown up to this many bytes.
pub(crate) const MAX_SHOWN_BODY: usize = 64 * 1024;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 2em 2em;color:#222}\
nav{padding:.8em 0;border-bottom:1px solid #ccc;margin-bottom:1em}nav a{margin-right:1.2em}\
nav form{display:inline;float:right}table{border-collapse:collapse;margin:.5em 0 1em}\
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:40em}\
.problem{color:#a00}.notice{background:#eef6ee;padding:.5em}form.inline{display:inline}\
.muted{color:#777}td.actions{white-space:nowrap}td a{word-break:break-all}";

/// Adds the headers every console answer carries.
pub(crate) async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A whole page: the navigation (with sign-out) when signed in, then `content`.
pub(crate) fn layout(title: &str, signed: Option<&Signed>, content: Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · hookyard" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                @if let Some(signed) = signed {
                    nav {
                        a href="/console/events" { "Events" }
                        a href="/console/dead-letters" { "Dead letters" }
                        a href="/console/handlers" { "Handlers" }
                        a href="/console/connections" { "Connections" }
                        form method="post" action="/console/sign-out" {
                            (csrf(signed))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                (content)
            }
        }
    };
    Html(page.into_string())
}

/// The hidden CSRF field of a form.
pub(crate) fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// A page saying why a request was refused.
pub(crate) fn refusal(status: StatusCode, message: &str) -> Response {
    let content = html! {
        h1 { (status.canonical_reason().unwrap_or("Refused")) }
        p.problem { (message) }
        p { a href="/console/events" { "Back to the console" } }
    };
    (status, layout("Refused", None, content)).into_response()
}

/// An admin failure as a page, with its status.
pub(crate) fn failure(error: &Error) -> Response {
    refusal(error.status(), &crate::report(error))
}

/// A time in milliseconds since the epoch, as RFC 3339 in UTC; empty for 0.
pub(crate) fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        _ => String::new(),
    }
}

/// A time typed in a form (`2026-12-01T20:30`, with or without seconds, read as UTC) in
/// milliseconds since the epoch; 0 for an empty field.
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    let full = if text.len() == 16 {
        format!("{text}:00")
    } else {
        text.to_owned()
    };
    let at = humantime::parse_rfc3339_weak(&full)
        .map_err(|_| format!("{text:?} is not a time like 2026-12-01T20:30 (UTC)"))?;
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("{text:?} is before 1970"))
}

/// A body as shown: pretty JSON, text, or base64 when it is not UTF-8; cut at
/// [`MAX_SHOWN_BODY`] with a note.
pub(crate) fn body(bytes: &[u8]) -> Markup {
    let cut = &bytes[..bytes.len().min(MAX_SHOWN_BODY)];
    let (text, kind) = match std::str::from_utf8(cut) {
        Ok(text) if cut.len() == bytes.len() => {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(json) => (
                    serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.to_owned()),
                    "",
                ),
                Err(_) => (text.to_owned(), ""),
            }
        }
        Ok(text) => (text.to_owned(), ""),
        // A cut may split a character: keep the valid prefix when that is all that is wrong.
        Err(e) if e.error_len().is_none() => (
            String::from_utf8_lossy(&cut[..e.valid_up_to()]).into_owned(),
            "",
        ),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(cut),
            "not UTF-8, shown as base64",
        ),
    };
    html! {
        @if bytes.is_empty() { p.muted { "(empty body)" } } @else {
            p.muted {
                (bytes.len()) " bytes"
                @if !kind.is_empty() { ", " (kind) }
                @if cut.len() < bytes.len() { ", the first " (cut.len()) " shown" }
            }
            pre.body { (text) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_escaped_and_binary_is_base64() {
        let shown = body(b"<script>alert(1)</script>").into_string();
        assert!(shown.contains("&lt;script&gt;"), "{shown}");
        assert!(!shown.contains("<script>"), "{shown}");
        let binary = body(&[0xff, 0xfe, 0x00]).into_string();
        assert!(binary.contains("//4A"), "{binary}");
        assert!(binary.contains("base64"), "{binary}");
        let large = body(&vec![b'a'; MAX_SHOWN_BODY + 10]).into_string();
        assert!(large.contains("the first 65536 shown"), "{large}");
    }

    #[test]
    fn form_times_are_read_as_utc() {
        assert_eq!(parse_time(""), Ok(0));
        assert_eq!(parse_time("1970-01-01T00:01"), Ok(60_000));
        assert_eq!(parse_time("1970-01-01T00:00:02"), Ok(2_000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(time(60_000), "1970-01-01T00:01:00.000Z");
        assert_eq!(time(0), "");
    }
}
