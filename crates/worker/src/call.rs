//! Turns an `http` step and a work item into the egress `CallRequest`: path, headers and body
//! computed from the step's expressions, and the idempotency key. Values interpolated into the
//! path are encoded as one segment or query component (`hookyard_core::expr::path`) unless the
//! step sets `path_raw`; a path that cannot be made safe is a [`BuildError::Path`].

use hookyard_core::{
    config::HttpStep,
    envelope,
    expr::{ExprError, Input, path::PathError},
};
use hookyard_proto::{
    egress::v1::{CallRequest, CallResponse, Header},
    event::v1::{Envelope, WorkItem},
};

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

/// `$event.response` for the steps after an `http` step: `status`, `headers` (lower-case names;
/// repeated ones joined with `, `) and `body` — parsed JSON when it is JSON, else text.
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
    let body = serde_json::from_slice(&response.body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&response.body).into_owned())
    });
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
pub fn build(
    step: &HttpStep,
    index: usize,
    event: &Envelope,
    item: &WorkItem,
    response: Option<&serde_json::Value>,
) -> Result<CallRequest, BuildError> {
    let input = Input::new(
        &event.headers,
        &event.body,
        event_meta(event, item, response),
    );
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
    let body = match &step.body {
        Some(expr) => expr.eval_body(&input).map_err(expr_err("body"))?,
        None => event.body.clone(),
    };
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
        let i = Integration::parse(CONFIG, &|_| None).expect("valid");
        i.handlers["orders"]
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Http(h) => Some(h.clone()),
                Step::Reply(_) => None,
            })
            .collect()
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
        let req = build(&steps()[0], 0, &event, &item, None).expect("builds");
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
    }

    #[test]
    fn default_body_is_the_raw_event_body_and_later_steps_get_their_own_key() {
        let (event, item) = item(r#"{"order":{"id":"o-7"}}"#);
        let req = build(&steps()[1], 1, &event, &item, None).expect("builds");
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
        let req = build(&steps()[1], 1, &event, &item, None).expect("builds");
        assert_eq!(req.idempotency_key, "evt_1:orders:rpl_9:1");
        assert_eq!(req.handler, "orders");
    }

    #[test]
    fn expression_errors_and_missing_paths_are_errors() {
        let (event, not_json) = item("not json");
        assert!(matches!(
            build(&steps()[0], 0, &event, &not_json, None),
            Err(BuildError::Expr {
                source: ExprError::BodyNotJson(_),
                ..
            })
        ));
        let (event, json) = item_json();
        assert!(matches!(
            build(&steps()[2], 2, &event, &json, None),
            Err(BuildError::NoPath)
        ));
        let deep = format!("{}{}", "{\"a\":".repeat(500_000), "}".repeat(500_000));
        let (event, work) = item(&deep);
        assert!(matches!(
            build(&steps()[0], 0, &event, &work, None),
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
            build(&steps()[0], 0, &event, &work, None),
            Err(BuildError::Path(PathError::DotSegment))
        ));
        let (event, work) = item(r#"{"order":{"id":"a/b?admin=1#f"}}"#);
        let req = build(&steps()[0], 0, &event, &work, None).expect("builds");
        assert_eq!(req.path, "/v1/orders/a%2Fb%3Fadmin=1%23f");
        let (event, work) = item(r#"{"order":{"id":"a\r\nHost: evil"}}"#);
        assert!(matches!(
            build(&steps()[0], 0, &event, &work, None),
            Err(BuildError::Path(PathError::ControlCharacter))
        ));
    }

    fn item_json() -> (Envelope, WorkItem) {
        item("{}")
    }
}
