//! The request of one page: the source's `path`, `query`, `headers` and `body` computed from
//! `$cursor` and `$now`, and where the page is (a link, or a pagination parameter).

use hookyard_core::config::{Pagination, Poll, PollVars};
use hookyard_proto::egress::v1::{CallRequest, Header};

use super::PollError;

/// Which page to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRef {
    /// The source's own path and query.
    First,
    /// The source's path and query with `name` set to `value` (page number, offset, token).
    Param {
        /// Query parameter.
        name: String,
        /// Its value.
        value: String,
    },
    /// A path and query from the previous answer's `Link` header, used as it is.
    Path(String),
}

impl PageRef {
    /// The first page of a poll: page and offset pagination name their start explicitly.
    pub fn first(pagination: &Pagination) -> Self {
        match pagination {
            Pagination::Page { param, start, .. } | Pagination::Offset { param, start, .. } => {
                Self::Param {
                    name: param.clone(),
                    value: start.to_string(),
                }
            }
            Pagination::None | Pagination::Link | Pagination::Cursor { .. } => Self::First,
        }
    }
}

/// Builds the egress request of `page`.
pub fn build(
    source: &str,
    poll: &Poll,
    vars: &PollVars<'_>,
    page: &PageRef,
) -> Result<CallRequest, PollError> {
    let expr = |field: String| move |source| PollError::Request { field, source };
    let path = match page {
        PageRef::Path(path) => path.clone(),
        PageRef::First | PageRef::Param { .. } => {
            let path = poll
                .path
                .eval_string(vars)
                .map_err(expr("path".to_owned()))?
                .filter(|p| p.starts_with('/'))
                .ok_or(PollError::NoPath)?;
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &poll.query {
                if matches!(page, PageRef::Param { name: param, .. } if param == name) {
                    continue;
                }
                if let Some(value) = value
                    .eval_string(vars)
                    .map_err(expr(format!("query.{name}")))?
                {
                    query.append_pair(name, &value);
                }
            }
            if let PageRef::Param { name, value } = page {
                query.append_pair(name, value);
            }
            join(&path, &query.finish())
        }
    };
    let mut headers = Vec::with_capacity(poll.headers.len());
    for (name, value) in &poll.headers {
        if let Some(value) = value
            .eval_string(vars)
            .map_err(expr(format!("headers.{name}")))?
        {
            headers.push(Header {
                name: name.clone(),
                value,
            });
        }
    }
    let body = match &poll.body {
        Some(body) => {
            if !headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("content-type"))
            {
                headers.push(Header {
                    name: "content-type".to_owned(),
                    value: "application/json".to_owned(),
                });
            }
            body.eval_body(vars).map_err(expr("body".to_owned()))?
        }
        None => Vec::new(),
    };
    Ok(CallRequest {
        connection: poll.connection.clone(),
        method: poll.method.clone(),
        path,
        headers,
        body,
        idempotency_key: String::new(),
        // Recorded in egress's audit: which source the call polled for.
        event_id: format!("poll:{source}"),
        // A poll is made for a source, not for a handler.
        handler: String::new(),
    })
}

fn join(path: &str, query: &str) -> String {
    match (query.is_empty(), path.contains('?')) {
        (true, _) => path.to_owned(),
        (false, true) => format!("{path}&{query}"),
        (false, false) => format!("{path}?{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_core::Integration;

    fn poll(extra: &str) -> Poll {
        let text = format!(
            r#"
[sources.erp.poll]
connection = "erp"
path = {{ jq = '"/v1/orders?fixed=1"' }}
query = {{ since = {{ jq = "$cursor" }}, limit = "2", gone = {{ jq = "null" }} }}
headers = {{ "X-Since" = {{ jq = "$cursor" }}, "X-At" = {{ jq = "$now" }} }}
every = "30s"
record_id = ".id"
{extra}
[connections.erp]
base_url = "https://erp.example.com"
"#
        );
        let i = Integration::parse(&text, &|_| None).expect("valid");
        i.sources["erp"].poll.clone().expect("poll")
    }

    fn vars(cursor: &serde_json::Value) -> PollVars<'_> {
        PollVars {
            cursor,
            now: 1_700_000_000,
        }
    }

    #[test]
    fn expressions_fill_path_query_and_headers() {
        let cursor = serde_json::json!("2024-01-01T00:00:00Z");
        let req = build("erp", &poll(""), &vars(&cursor), &PageRef::First).expect("builds");
        assert_eq!(
            req.path,
            "/v1/orders?fixed=1&limit=2&since=2024-01-01T00%3A00%3A00Z"
        );
        assert_eq!(req.method, "GET");
        assert_eq!(req.event_id, "poll:erp");
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|h| h.name == n)
                .map(|h| h.value.clone())
        };
        assert_eq!(header("X-Since").as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(header("X-At").as_deref(), Some("1700000000"));
        assert!(req.body.is_empty());
    }

    #[test]
    fn a_page_parameter_replaces_the_configured_one() {
        let cursor = serde_json::Value::Null;
        let page = PageRef::Param {
            name: "limit".to_owned(),
            value: "a b&c".to_owned(),
        };
        let req = build("erp", &poll(""), &vars(&cursor), &page).expect("builds");
        assert_eq!(req.path, "/v1/orders?fixed=1&limit=a+b%26c");
    }

    #[test]
    fn a_link_path_is_used_as_it_is_and_a_body_is_json() {
        let cursor = serde_json::json!(7);
        let p = poll("method = \"POST\"\nbody = { jq = '{since: $cursor}' }");
        let page = PageRef::Path("/v1/orders?page=2".to_owned());
        let req = build("erp", &p, &vars(&cursor), &page).expect("builds");
        assert_eq!(req.path, "/v1/orders?page=2");
        assert_eq!(req.body, br#"{"since":7}"#);
        assert!(req.headers.iter().any(|h| h.name == "content-type"));
    }

    #[test]
    fn page_and_offset_pagination_name_their_first_page() {
        let p = poll("pagination = { type = \"offset\", param = \"offset\" }");
        assert_eq!(
            PageRef::first(&p.pagination),
            PageRef::Param {
                name: "offset".to_owned(),
                value: "0".to_owned()
            }
        );
    }

    #[test]
    fn a_path_that_is_not_absolute_is_an_error() {
        let text = r#"
[sources.erp.poll]
connection = "erp"
path = { jq = "$cursor" }
every = "30s"
record_id = ".id"
[connections.erp]
base_url = "https://erp.example.com"
"#;
        let i = Integration::parse(text, &|_| None).expect("valid");
        let p = i.sources["erp"].poll.clone().expect("poll");
        let cursor = serde_json::json!("https://evil.example.net/x");
        assert!(matches!(
            build("erp", &p, &vars(&cursor), &PageRef::First),
            Err(PollError::NoPath)
        ));
    }
}
