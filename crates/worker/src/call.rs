//! Turns an `http` step and a work item into the egress `CallRequest`: path, headers and body
//! computed from the step's expressions, and the idempotency key. Values interpolated into the
//! path are encoded as one segment or query component (`hookyard_core::expr::path`) unless the
//! step sets `path_raw`; a path that cannot be made safe is a [`BuildError::Path`].

use hookyard_core::{
    config::{BodyFormat, HttpStep},
    envelope,
    expr::{ExprError, Input, path::PathError},
};
use hookyard_proto::{
    egress::v1::{CallRequest, CallResponse, Header},
    event::v1::{Envelope, WorkItem},
};
use serde_json::Value;

/// A step's request could not be built from the event.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An expression failed.
    #[error("expression for {field} failed")]
    Expr {
        /// `path`, `body` or `headers.<name>`.
        field: String,
        #[source]
        source: ExprError,
    },
    /// The path expression gave no value.
    #[error("the path expression gave no value")]
    NoPath,
    /// The path built from the event is refused (a dot segment, a control character).
    #[error("refused path: {0}")]
    Path(#[source] PathError),
    /// The computed body does not fit the step's `body_format`.
    #[error(transparent)]
    Body(#[from] crate::body::BodyError),
}

/// What a step's expressions run on: the event, its work item, the last `http` step's answer
/// (`$event.response`) and the results of the steps before (`$steps`).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// The event.
    pub event: &'a Envelope,
    /// The work item carrying it.
    pub item: &'a WorkItem,
    /// The last `http` step's answer, if any.
    pub response: Option<&'a Value>,
    /// `$steps`: results by step name (or index).
    pub steps: &'a Value,
}

impl<'a> Scope<'a> {
    /// The expression input of a step.
    pub fn input(&self) -> Input<'a> {
        Input::new(
            &self.event.headers,
            &self.event.body,
            event_meta(self.event, self.item, self.response),
        )
        .with_steps(self.steps.clone())
    }
}

/// The `$event` metadata step expressions see (the headers are added by [`Input::new`]).
/// After an `http` step, `response` holds that step's answer (see [`response_meta`]).
pub fn event_meta(
    event: &Envelope,
    item: &WorkItem,
    response: Option<&serde_json::Value>,
) -> serde_json::Value {
    let mut meta = serde_json::json!({
        "id": event.id,
        "source": event.source,
        "type": item.event_type,
        "handler": item.handler,
        "received_at_ms": event.received_at_ms,
    });
    if let (Some(response), Some(map)) = (response, meta.as_object_mut()) {
        map.insert("response".to_owned(), response.clone());
    }
    meta
}

/// The result of an `http` step (`$steps.<name>`, and `$event.response` for the steps after
/// it): `status`, `headers` (lower-case names; repeated ones joined with `, `) and `body`, read
/// by its content type (see [`crate::body::read`]).
pub fn response_meta(response: &CallResponse) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for header in &response.headers {
        let name = header.name.to_ascii_lowercase();
        let value = match headers.remove(&name) {
            Some(serde_json::Value::String(before)) => format!("{before}, {}", header.value),
            _ => header.value.clone(),
        };
        headers.insert(name, serde_json::Value::String(value));
    }
    let content_type = headers.get("content-type").and_then(Value::as_str);
    let body = crate::body::read(content_type, &response.body);
    serde_json::json!({ "status": response.status, "headers": headers, "body": body })
}

/// Idempotency key of step `index` of a handler. The first step uses the documented key
/// (`<event id>:<handler>`); later steps append their index, so two calls of one pipeline to
/// the same partner are not mistaken for retries of each other.
pub fn step_idempotency_key(event_id: &str, handler: &str, index: usize) -> String {
    step_key(envelope::idempotency_key(event_id, handler), index)
}

/// The idempotency key of step `index` of `item`: from the item's own base key when a replay
/// set one (see `WorkItem.idempotency_key`), else [`step_idempotency_key`].
pub fn item_idempotency_key(event: &Envelope, item: &WorkItem, index: usize) -> String {
    if item.idempotency_key.is_empty() {
        step_idempotency_key(&event.id, &item.handler, index)
    } else {
        step_key(item.idempotency_key.clone(), index)
    }
}

fn step_key(key: String, index: usize) -> String {
    if index == 0 {
        key
    } else {
        format!("{key}:{index}")
    }
}

/// Builds the request of step `index`.
pub fn build(step: &HttpStep, index: usize, scope: Scope<'_>) -> Result<CallRequest, BuildError> {
    let Scope { event, item, .. } = scope;
    let input = scope.input();
    let expr_err = |field: &str| {
        let field = field.to_owned();
        move |source| BuildError::Expr { field, source }
    };
    let path = step
        .path
        .render(&input, step.path_raw)
        .map_err(|e| match e {
            PathError::Expr(source) => BuildError::Expr {
                field: "path".to_owned(),
                source,
            },
            other => BuildError::Path(other),
        })?
        .ok_or(BuildError::NoPath)?;
    let mut headers = Vec::with_capacity(step.headers.len());
    for (name, expr) in &step.headers {
        let value = expr
            .eval_string(&input)
            .map_err(expr_err(&format!("headers.{name}")))?;
        // A header whose expression gives no value is left out, like a missing optional field.
        if let Some(value) = value {
            headers.push(Header {
                name: name.clone(),
                value,
            });
        }
    }
    let (body, content_type) = match &step.body {
        Some(expr) => {
            let format = step.body_format.unwrap_or(if expr.is_jq() {
                BodyFormat::Json
            } else {
                BodyFormat::Text
            });
            let body = if format == BodyFormat::Text && !expr.is_jq() {
                expr.eval_body(&input).map_err(expr_err("body"))?
            } else {
                let value = expr.eval_json(&input).map_err(expr_err("body"))?;
                crate::body::write(format, &value.unwrap_or(Value::Null))?
            };
            (body, Some(format.content_type().to_owned()))
        }
        None => (event.body.clone(), event_content_type(event)),
    };
    let has_content_type = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-type"));
    if let (Some(value), false) = (content_type, has_content_type) {
        headers.push(Header {
            name: "Content-Type".to_owned(),
            value,
        });
    }
    Ok(CallRequest {
        connection: step.connection.clone(),
        method: step.method.clone(),
        path,
        headers,
        body,
        idempotency_key: item_idempotency_key(event, item, index),
        event_id: event.id.clone(),
        handler: item.handler.clone(),
    })
}

/// The event's own `Content-Type`, passed on with its body as received.
fn event_content_type(event: &Envelope) -> Option<String> {
    let header = event
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))?;
    let text = std::str::from_utf8(&header.value).ok()?;
    (!text.chars().any(char::is_control)).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_core::{Integration, config::Step};
    use hookyard_proto::event::v1::Header as EventHeader;

    const CONFIG: &str = r#"
[handlers.orders]
[[handlers.orders.steps]]
type = "http"
connection = "erp"
method = "PUT"
path = { jq = '"/v1/orders/\(.order.id)"' }
headers = { "X-Event" = { jq = "$event.id" }, "X-Type" = { jq = "$event.type" }, "X-Missing" = { header = "X-Nope" }, "X-Req" = { header = "X-Request-Id" } }
body = { jq = '{ ref: .order.id, handler: $event.handler, source: $event.source }' }

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/raw"

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = { jq = ".missing" }

[connections.erp]
base_url = "https://erp.example.com"
"#;

    fn steps() -> Vec<HttpStep> {
        http_steps(CONFIG, "orders")
    }

    /// The `http` steps of `handler` in the integration file `config`.
    fn http_steps(config: &str, handler: &str) -> Vec<HttpStep> {
        let i = Integration::parse(config, &|_| None).expect("valid");
        i.handlers[handler]
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Http(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    fn built(
        step: &HttpStep,
        index: usize,
        event: &Envelope,
        item: &WorkItem,
    ) -> Result<CallRequest, BuildError> {
        let steps = serde_json::json!({});
        let scope = Scope {
            event,
            item,
            response: None,
            steps: &steps,
        };
        build(step, index, scope)
    }

    fn item(body: &str) -> (Envelope, WorkItem) {
        let event = Envelope {
            id: "evt_1".to_owned(),
            source: "shop".to_owned(),
            headers: vec![EventHeader {
                name: "X-Request-Id".to_owned(),
                value: b"r-9".to_vec(),
            }],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        let item = WorkItem {
            event: Some(event.clone()),
            handler: "orders".to_owned(),
            event_type: "order.created".to_owned(),
            ..Default::default()
        };
        (event, item)
    }

    #[test]
    fn expressions_fill_path_headers_and_body() {
        let (event, item) = item(r#"{"order":{"id":"o-7"}}"#);
        let req = built(&steps()[0], 0, &event, &item).expect("builds");
        assert_eq!(req.connection, "erp");
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, "/v1/orders/o-7");
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|h| h.name == n)
                .map(|h| h.value.as_str())
        };
        assert_eq!(header("X-Event"), Some("evt_1"));
        assert_eq!(header("X-Type"), Some("order.created"));
        assert_eq!(header("X-Req"), Some("r-9"));
        assert_eq!(header("X-Missing"), None);
        let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"ref": "o-7", "handler": "orders", "source": "shop"})
        );
        assert_eq!(req.idempotency_key, "evt_1:orders");
        assert_eq!(header("Content-Type"), Some("application/json"));
    }

    #[test]
    fn body_formats_set_their_content_type_unless_the_step_does() {
        let config = r#"
[handlers.h]
[[handlers.h.steps]]
type = "http"
connection = "erp"
path = "/form"
body = { jq = '{ id: .order.id, qty: 2 }' }
body_format = "form"

[[handlers.h.steps]]
type = "http"
connection = "erp"
path = "/xml"
headers = { "content-type" = "application/vnd.erp+xml" }
body = { jq = '{ order: { "@id": .order.id } }' }
body_format = "xml"

[[handlers.h.steps]]
type = "http"
connection = "erp"
path = "/raw"

[[handlers.h.steps]]
type = "http"
connection = "erp"
path = "/text"
body = "ping"

[connections.erp]
base_url = "https://erp.example.com"
"#;
        let steps = http_steps(config, "h");
        let (mut event, item) = item(r#"{"order":{"id":"o 7"}}"#);
        event.headers.push(EventHeader {
            name: "content-type".to_owned(),
            value: b"application/json; charset=utf-8".to_vec(),
        });
        let content_type = |r: &CallRequest| {
            r.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-type"))
                .map(|h| h.value.clone())
                .collect::<Vec<_>>()
        };
        let form = built(&steps[0], 0, &event, &item).expect("form");
        assert_eq!(form.body, b"id=o+7&qty=2");
        assert_eq!(content_type(&form), ["application/x-www-form-urlencoded"]);
        let xml = built(&steps[1], 1, &event, &item).expect("xml");
        assert_eq!(xml.body, br#"<order id="o 7"></order>"#);
        assert_eq!(content_type(&xml), ["application/vnd.erp+xml"]);
        let raw = built(&steps[2], 2, &event, &item).expect("raw");
        assert_eq!(raw.body, event.body);
        assert_eq!(content_type(&raw), ["application/json; charset=utf-8"]);
        let text = built(&steps[3], 3, &event, &item).expect("text");
        assert_eq!(text.body, b"ping");
        assert_eq!(content_type(&text), ["text/plain; charset=utf-8"]);
    }

    #[test]
    fn default_body_is_the_raw_event_body_and_later_steps_get_their_own_key() {
        let (event, item) = item(r#"{"order":{"id":"o-7"}}"#);
        let req = built(&steps()[1], 1, &event, &item).expect("builds");
        assert_eq!(req.method, "POST");
        assert_eq!(req.body, event.body);
        assert_eq!(req.idempotency_key, "evt_1:orders:1");
    }

    #[test]
    fn a_replay_with_a_new_key_replaces_the_base_and_keeps_the_step_suffix() {
        let (event, mut item) = item(r#"{"order":{"id":"o-7"}}"#);
        item.idempotency_key = "evt_1:orders:rpl_9".to_owned();
        assert_eq!(item_idempotency_key(&event, &item, 0), "evt_1:orders:rpl_9");
        assert_eq!(
            item_idempotency_key(&event, &item, 2),
            "evt_1:orders:rpl_9:2"
        );
        let req = built(&steps()[1], 1, &event, &item).expect("builds");
        assert_eq!(req.idempotency_key, "evt_1:orders:rpl_9:1");
        assert_eq!(req.handler, "orders");
    }

    #[test]
    fn expression_errors_and_missing_paths_are_errors() {
        // In a handler a body that is not JSON reads as null: the id the path interpolates is
        // then missing, which is refused rather than sent as `/v1/orders/null`.
        let (event, not_json) = item("not json");
        let refused = built(&steps()[0], 0, &event, &not_json);
        assert!(
            matches!(&refused, Err(BuildError::Expr { field, source: ExprError::Eval { detail, .. } })
                if field == "path" && detail.contains("missing or empty")),
            "{refused:?}"
        );
        let (event, empty) = item(r#"{"order":{"id":""}}"#);
        assert!(matches!(
            built(&steps()[0], 0, &event, &empty),
            Err(BuildError::Expr { .. })
        ));
        let (event, json) = item_json();
        assert!(matches!(
            built(&steps()[2], 2, &event, &json),
            Err(BuildError::NoPath)
        ));
        let deep = format!("{}{}", "{\"a\":".repeat(500_000), "}".repeat(500_000));
        let (event, work) = item(&deep);
        assert!(matches!(
            built(&steps()[0], 0, &event, &work),
            Err(BuildError::Expr {
                source: ExprError::BodyTooDeep(_),
                ..
            })
        ));
    }

    #[test]
    fn sender_data_in_the_path_is_one_encoded_segment_or_refused() {
        let (event, work) = item(r#"{"order":{"id":"../x?admin=1#f"}}"#);
        assert!(matches!(
            built(&steps()[0], 0, &event, &work),
            Err(BuildError::Path(PathError::DotSegment))
        ));
        let (event, work) = item(r#"{"order":{"id":"a/b?admin=1#f"}}"#);
        let req = built(&steps()[0], 0, &event, &work).expect("builds");
        assert_eq!(req.path, "/v1/orders/a%2Fb%3Fadmin=1%23f");
        let (event, work) = item(r#"{"order":{"id":"a\r\nHost: evil"}}"#);
        assert!(matches!(
            built(&steps()[0], 0, &event, &work),
            Err(BuildError::Path(PathError::ControlCharacter))
        ));
    }

    fn item_json() -> (Envelope, WorkItem) {
        item("{}")
    }
}
