//! The `reply` step: the answer a handler gives the sender of a `sync` source, published on
//! core NATS to `hookyard.reply.<event id>` for the ingress instance holding the request.
//!
//! The reply is not stored: if nobody waits for it (the deadline passed, the source is not
//! `sync`, this is a redelivery) NATS drops it, and the sender has had the configured reply.
//! So a failed publish is only logged; it never fails the event.

use hookyard_core::{config::ReplyStep, streams::Topology};
use hookyard_proto::event::v1::{Header, Reply};
use prost::Message as _;

use crate::call::{BuildError, Scope};

/// Builds the reply of a `reply` step from the event and the results before it.
pub fn build(step: &ReplyStep, scope: Scope<'_>) -> Result<Reply, BuildError> {
    let Scope { event, item, .. } = scope;
    let input = scope.input();
    let mut headers = Vec::with_capacity(step.headers.len());
    for (name, expr) in &step.headers {
        let value = expr
            .eval_string(&input)
            .map_err(|source| BuildError::Expr {
                field: format!("headers.{name}"),
                source,
            })?;
        if let Some(value) = value {
            headers.push(Header {
                name: name.clone(),
                value: value.into_bytes(),
            });
        }
    }
    let body = match &step.body {
        Some(expr) => expr.eval_body(&input).map_err(|source| BuildError::Expr {
            field: "body".to_owned(),
            source,
        })?,
        None => Vec::new(),
    };
    Ok(Reply {
        event_id: event.id.clone(),
        handler: item.handler.clone(),
        status: u32::from(step.status),
        headers,
        body,
    })
}

/// Publishes `reply` for the ingress waiting on it, if any.
pub(crate) async fn send(client: &async_nats::Client, topology: &Topology, reply: Reply) {
    let subject = topology.reply_subject(&reply.event_id);
    if let Err(error) = client.publish(subject, reply.encode_to_vec().into()).await {
        tracing::warn!(handler = %reply.handler, event_id = %reply.event_id, %error, "failed to send the reply");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_core::{Integration, config::Step};
    use hookyard_proto::event::v1::{Envelope, WorkItem};

    #[test]
    fn a_reply_step_is_built_from_the_event() {
        let config = r#"
[handlers.quote]
[[handlers.quote.steps]]
type = "reply"
status = 201
headers = { "X-Event" = { jq = "$event.id" }, "Content-Type" = "application/json" }
body = { jq = '{ price: (.qty * 7), id: $event.id, erp: $event.response.body.ref }' }
"#;
        let integration = Integration::parse(config, &|_| None).expect("valid");
        let Step::Reply(step) = &integration.handlers["quote"].steps[0] else {
            panic!("a reply step");
        };
        let event = Envelope {
            id: "evt_1".into(),
            body: br#"{"qty":6}"#.to_vec(),
            ..Default::default()
        };
        let item = WorkItem {
            event: Some(event.clone()),
            handler: "quote".into(),
            event_type: String::new(),
            ..Default::default()
        };
        let partner = hookyard_proto::egress::v1::CallResponse {
            status: 201,
            body: br#"{"ref":"erp-9"}"#.to_vec(),
            ..Default::default()
        };
        let response = crate::call::response_meta(&partner);
        let steps = serde_json::json!({});
        let scope = Scope {
            event: &event,
            item: &item,
            response: Some(&response),
            steps: &steps,
        };
        let reply = build(step, scope).expect("builds");
        assert_eq!(reply.status, 201);
        assert_eq!(reply.event_id, "evt_1");
        let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"price": 42, "id": "evt_1", "erp": "erp-9"})
        );
        assert!(
            reply
                .headers
                .iter()
                .any(|h| h.name == "X-Event" && h.value == b"evt_1")
        );
    }
}
