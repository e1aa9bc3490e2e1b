//! The answer to an accepted event: the source's configured `reply`, or in `sync` mode the
//! reply a handler's `reply` step publishes on `hookyard.reply.<event id>`.
//!
//! In `sync` mode ingress subscribes to the reply subject *before* it publishes the event: the
//! subscription and the publish go out on the same NATS connection in that order, so the server
//! knows the subscription before any worker can see the event, and no reply is missed. The
//! subscription ends with the request. Only the instance holding the request subscribes, so
//! replicas need no coordination; core NATS delivers the reply to whoever listens, and a reply
//! nobody waits for (deadline passed, a redelivery, an `async` source) is dropped by NATS.
//!
//! A handler's reply is checked before it is sent: a status outside 200–599 or a body that
//! does not decode makes ingress use the configured reply instead; headers a reply may not set
//! (framing, hop-by-hop, invalid) are left out.

use std::time::Duration;

use axum::{
    Json,
    body::Body,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use hookyard_core::config::{Reply, reply};
use hookyard_proto::event::v1::Reply as HandlerReply;
use http::{HeaderName, HeaderValue, StatusCode, header::CONTENT_TYPE};
use prost::Message;

/// The source's configured answer for `event_id`.
pub(crate) fn configured(config: &Reply, event_id: &str, source: &str) -> Response {
    let status = StatusCode::from_u16(config.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = match &config.body {
        None => (status, Json(serde_json::json!({ "id": event_id }))).into_response(),
        Some(template) => {
            let mut response = (status, reply::render(template, event_id, source)).into_response();
            if !config
                .headers
                .keys()
                .any(|n| n.eq_ignore_ascii_case("content-type"))
            {
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            response
        }
    };
    for (name, template) in &config.headers {
        let value = reply::render(template, event_id, source);
        // Names and values were checked at start; the placeholders fill in ids and names.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A handler's reply as an HTTP response, or `None` when it cannot be one.
pub(crate) fn from_handler(payload: &[u8]) -> Option<Response> {
    let reply = HandlerReply::decode(payload).ok()?;
    let status = u16::try_from(reply.status)
        .ok()
        .filter(|s| (200..=599).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())?;
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = status;
    for header in reply.headers {
        if !reply::allowed_header(&header.name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(&header.value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Some(response)
}

/// Waits up to `wait` for a usable handler reply on `subscriber`.
pub(crate) async fn wait(
    subscriber: &mut async_nats::Subscriber,
    wait: Duration,
) -> Option<Response> {
    let receive = async {
        while let Some(message) = subscriber.next().await {
            match from_handler(&message.payload) {
                Some(response) => return Some(response),
                None => tracing::warn!("ignoring a handler reply that is not a valid response"),
            }
        }
        None
    };
    tokio::time::timeout(wait, receive).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_proto::event::v1::Header;

    fn reply(toml_text: &str) -> Reply {
        toml::from_str(toml_text).expect("reply parses")
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn the_default_is_202_with_the_id_as_json() {
        let response = configured(&Reply::default(), "evt_1", "shop");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(body(response).await, r#"{"id":"evt_1"}"#);
    }

    #[tokio::test]
    async fn a_configured_reply_is_templated() {
        let config = reply(
            r#"
            status = 200
            headers = { "Content-Type" = "application/json", "Location" = "/events/{event_id}" }
            body = '{{"received":true,"id":"{event_id}","source":"{source}"}}'
            "#,
        );
        let response = configured(&config, "evt_9", "stripe");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["location"], "/events/evt_9");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body(response).await,
            r#"{"received":true,"id":"evt_9","source":"stripe"}"#
        );
        let plain = configured(&reply("body = \"ok\""), "evt_9", "s");
        assert_eq!(plain.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    }

    #[tokio::test]
    async fn handler_replies_are_checked() {
        let encode = |status: u32, headers: Vec<(&str, &[u8])>| {
            HandlerReply {
                event_id: "evt_1".into(),
                handler: "h".into(),
                status,
                headers: headers
                    .into_iter()
                    .map(|(n, v)| Header {
                        name: n.into(),
                        value: v.to_vec(),
                    })
                    .collect(),
                body: b"quote: 42".to_vec(),
            }
            .encode_to_vec()
        };
        let response = from_handler(&encode(
            201,
            vec![
                ("X-Quote", b"42"),
                ("Content-Length", b"999"),
                ("Connection", b"close"),
                ("Bad Name", b"x"),
                ("X-Bad-Value", b"a\r\nb"),
            ],
        ))
        .expect("valid reply");
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-quote"], "42");
        assert!(response.headers().get("connection").is_none());
        assert!(response.headers().get("x-bad-value").is_none());
        assert_eq!(body(response).await, "quote: 42");
        assert!(from_handler(&encode(199, vec![])).is_none());
        assert!(from_handler(&encode(600, vec![])).is_none());
        assert!(from_handler(b"\xff\xff\xff not protobuf").is_none());
    }
}
