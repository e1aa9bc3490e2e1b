//! HTML pages of the consent server: one layout, every value escaped by the caller with
//! [`escape`], headers that keep the pages out of caches, frames and referrers.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page: a status, a title (plain text) and a body (HTML, already escaped).
pub(crate) struct Page {
    status: StatusCode,
    title: String,
    body: String,
}

impl Page {
    pub(crate) fn new(status: StatusCode, title: &str, body: String) -> Self {
        Self {
            status,
            title: title.to_owned(),
            body,
        }
    }

    /// An error page; `text` is HTML, already escaped.
    pub(crate) fn error(status: StatusCode, title: &str, text: &str) -> Self {
        Self::new(
            status,
            title,
            format!(
                "<p class=\"error\" data-status=\"{}\">{text}</p><p><a href=\"/\">Connections</a></p>",
                status.as_u16()
            ),
        )
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <title>{title} · hookyard</title><style>\
             body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
             table{{border-collapse:collapse;width:100%}}td,th{{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}}\
             .connected{{color:#176f2c}}.needs-consent{{color:#8a5a00}}.broken,.error{{color:#b00020}}\
             </style></head><body><h1>{title}</h1>{body}</body></html>\n",
            title = escape(&self.title),
            body = self.body,
        );
        let mut response = (self.status, Html(html)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
