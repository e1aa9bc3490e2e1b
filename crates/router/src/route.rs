//! Where one event goes: its type, from the source's `event_type` expression, and the handlers
//! the route table sends that type to. A pure function of the integration file and the envelope.

use hookyard_core::{
    Integration,
    expr::{ExprError, Input},
};
use hookyard_proto::event::v1::Envelope;

/// The routing decision for one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Handlers that each get their own copy, in route order, without repeats (never empty).
    Handlers {
        /// The extracted event type (empty when the source has no type expression).
        event_type: String,
        /// Handler names.
        handlers: Vec<String>,
    },
    /// Nothing can take the event; it is dead-lettered as unrouted.
    Unrouted {
        /// The event type, when one was extracted.
        event_type: String,
        /// Why.
        why: Unrouted,
    },
}

/// Why an event has no handler.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unrouted {
    /// The event names a source the integration file does not have.
    #[error("no source named {0:?} in the integration file")]
    UnknownSource(String),
    /// The source's type expression gave no value (missing header, `null`, empty string).
    #[error("the event type expression gave no value")]
    NoType,
    /// The source's type expression failed (for example a jq filter on a non-JSON body).
    #[error("the event type expression failed")]
    TypeExpression(#[source] ExprError),
    /// No route matches the type.
    #[error("no route matches event type {event_type:?} from source {source_name:?}")]
    NoRoute {
        /// The event type.
        event_type: String,
        /// The source.
        source_name: String,
    },
}

/// The `$event` metadata the type expression sees (the headers are added by [`Input::new`]).
pub fn event_meta(event: &Envelope) -> serde_json::Value {
    serde_json::json!({
        "id": event.id,
        "source": event.source,
        "received_at_ms": event.received_at_ms,
    })
}

/// Extracts the event type: the producer's for an event a handler published, else from the
/// source's type expression; `Ok("")` for a source without one.
pub fn event_type(integration: &Integration, event: &Envelope) -> Result<String, Unrouted> {
    let Some(source) = integration.sources.get(&event.source) else {
        return Err(Unrouted::UnknownSource(event.source.clone()));
    };
    if !event.event_type.is_empty() {
        return Ok(event.event_type.clone());
    }
    let Some(expr) = &source.event_type else {
        return Ok(String::new());
    };
    let input = Input::new(&event.headers, &event.body, event_meta(event));
    match expr.eval_string(&input) {
        Ok(Some(t)) if !t.is_empty() => Ok(t),
        Ok(_) => Err(Unrouted::NoType),
        Err(e) => Err(Unrouted::TypeExpression(e)),
    }
}

/// Decides where `event` goes.
pub fn decide(integration: &Integration, event: &Envelope) -> Decision {
    let event_type = match event_type(integration, event) {
        Ok(t) => t,
        Err(why) => {
            return Decision::Unrouted {
                event_type: String::new(),
                why,
            };
        }
    };
    // Built on the first route with a `when` that matches the type, so events of routes
    // without one cost nothing more.
    let input = std::cell::OnceCell::new();
    let input = || {
        input.get_or_init(|| {
            let mut meta = event_meta(event);
            if let Some(map) = meta.as_object_mut() {
                map.insert("type".to_owned(), event_type.clone().into());
            }
            Input::new(&event.headers, &event.body, meta)
        })
    };
    // A filter that fails (a body that is not JSON, a run-time error) does not match: the event
    // goes to the routes that do, or is dead-lettered as unrouted with the reason.
    let holds = |when: &hookyard_core::expr::Expr| when.eval_bool(input()).unwrap_or(false);
    let handlers: Vec<String> = integration
        .handlers_when(&event.source, &event_type, &holds)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if handlers.is_empty() {
        Decision::Unrouted {
            why: Unrouted::NoRoute {
                event_type: event_type.clone(),
                source_name: event.source.clone(),
            },
            event_type,
        }
    } else {
        Decision::Handlers {
            event_type,
            handlers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_proto::event::v1::Header;

    const CONFIG: &str = r#"
[sources.shop]
path = "/hooks/shop"
event_type = { header = "X-Topic" }

[sources.crm]
path = "/hooks/crm"
event_type = { jq = ".kind" }

[sources.plain]
path = "/hooks/plain"

[[routes]]
event = "order.created"
handlers = ["orders"]

[[routes]]
event = "order.*"
handlers = ["audit", "orders"]

[[routes]]
event = "*"
source = "plain"
handlers = ["audit"]

[[routes]]
event = "contact.*"
source = "crm"
handlers = ["orders"]

[handlers.orders]
steps = [{ type = "http", connection = "erp", path = "/o" }]

[handlers.audit]
steps = [{ type = "http", connection = "erp", path = "/a" }]

[connections.erp]
base_url = "https://erp.example.com"
"#;

    fn integration() -> Integration {
        Integration::parse(CONFIG, &|_| None).expect("valid config")
    }

    fn event(source: &str, headers: &[(&str, &str)], body: &str) -> Envelope {
        Envelope {
            id: "evt_1".to_owned(),
            source: source.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).to_owned(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn type_from_header_fans_out_in_route_order() {
        let d = decide(
            &integration(),
            &event("shop", &[("x-topic", "order.created")], "{}"),
        );
        assert_eq!(
            d,
            Decision::Handlers {
                event_type: "order.created".to_owned(),
                handlers: vec!["orders".to_owned(), "audit".to_owned()],
            }
        );
    }

    #[test]
    fn type_from_jq_on_body() {
        let i = integration();
        assert_eq!(
            event_type(&i, &event("crm", &[], r#"{"kind":"contact.new"}"#)),
            Ok("contact.new".to_owned())
        );
        assert!(matches!(
            decide(&i, &event("crm", &[], r#"{"kind":"contact.new"}"#)),
            Decision::Handlers { .. }
        ));
    }

    #[test]
    fn source_without_type_expression_routes_with_empty_type() {
        let i = integration();
        assert_eq!(event_type(&i, &event("plain", &[], "x")), Ok(String::new()));
        assert_eq!(
            decide(&i, &event("plain", &[], "x")),
            Decision::Handlers {
                event_type: String::new(),
                handlers: vec!["audit".to_owned()],
            }
        );
    }

    #[test]
    fn missing_or_empty_type_is_unrouted() {
        let i = integration();
        assert_eq!(
            event_type(&i, &event("shop", &[], "{}")),
            Err(Unrouted::NoType)
        );
        assert_eq!(
            event_type(&i, &event("shop", &[("X-Topic", "")], "{}")),
            Err(Unrouted::NoType)
        );
        assert_eq!(
            event_type(&i, &event("crm", &[], r#"{"kind":null}"#)),
            Err(Unrouted::NoType)
        );
    }

    #[test]
    fn type_expression_error_is_unrouted() {
        assert!(matches!(
            event_type(&integration(), &event("crm", &[], "not json")),
            Err(Unrouted::TypeExpression(ExprError::BodyNotJson(_)))
        ));
    }

    #[test]
    fn a_body_nested_past_the_limit_is_unrouted_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
        assert!(matches!(
            event_type(&integration(), &event("crm", &[], &deep)),
            Err(Unrouted::TypeExpression(ExprError::BodyTooDeep(_)))
        ));
    }

    #[test]
    fn unknown_source_is_unrouted() {
        assert!(matches!(
            decide(
                &integration(),
                &event("nope", &[("X-Topic", "order.created")], "")
            ),
            Decision::Unrouted {
                why: Unrouted::UnknownSource(_),
                ..
            }
        ));
    }

    #[test]
    fn type_matching_no_route_is_unrouted_with_its_type() {
        let d = decide(
            &integration(),
            &event("shop", &[("X-Topic", "customer.deleted")], "{}"),
        );
        let Decision::Unrouted { event_type, why } = d else {
            panic!("expected unrouted, got {d:?}");
        };
        assert_eq!(event_type, "customer.deleted");
        assert!(matches!(why, Unrouted::NoRoute { .. }));
    }

    #[test]
    fn source_restricted_route_ignores_other_sources() {
        // `contact.*` is only for crm; from shop nothing matches
        assert!(matches!(
            decide(
                &integration(),
                &event("shop", &[("X-Topic", "contact.new")], "{}")
            ),
            Decision::Unrouted { .. }
        ));
    }

    const BY_CONTENT: &str = r#"
[sources.shop]
path = "/hooks/shop"
event_type = { jq = ".type" }

[[routes]]
event = "order.created"
handlers = ["big-orders"]
when = { jq = ".order.total > 1000" }

[[routes]]
event = "order.created"
handlers = ["orders"]
when = { jq = "(.order.total > 1000) | not" }

[[routes]]
event = "order.*"
handlers = ["audit"]
when = { jq = '$event.type == "order.enriched" or $event.headers["x-audit"] == "1"' }

[handlers.orders]
steps = [{ type = "http", connection = "erp", path = "/o" }]

[handlers.big-orders]
steps = [{ type = "http", connection = "erp", path = "/b" }]

[handlers.audit]
steps = [{ type = "http", connection = "erp", path = "/a" }]

[connections.erp]
base_url = "https://erp.example.com"
"#;

    fn handlers_of(d: Decision) -> Vec<String> {
        match d {
            Decision::Handlers { handlers, .. } => handlers,
            Decision::Unrouted { why, .. } => panic!("unrouted: {why}"),
        }
    }

    #[test]
    fn route_when_sends_events_by_their_content() {
        let i = Integration::parse(BY_CONTENT, &|_| None).expect("valid config");
        let order =
            |total: u32| format!(r#"{{"type":"order.created","order":{{"total":{total}}}}}"#);
        assert_eq!(
            handlers_of(decide(&i, &event("shop", &[], &order(1500)))),
            ["big-orders"]
        );
        assert_eq!(
            handlers_of(decide(&i, &event("shop", &[], &order(1000)))),
            ["orders"]
        );
        assert_eq!(
            handlers_of(decide(&i, &event("shop", &[("X-Audit", "1")], &order(5)))),
            ["orders", "audit"]
        );
    }

    #[test]
    fn a_published_event_is_routed_by_its_own_type() {
        let i = Integration::parse(BY_CONTENT, &|_| None).expect("valid config");
        let mut published = event("shop", &[], r#"{"type":"ignored"}"#);
        published.event_type = "order.enriched".to_owned();
        assert_eq!(event_type(&i, &published), Ok("order.enriched".to_owned()));
        assert_eq!(handlers_of(decide(&i, &published)), ["audit"]);
    }

    #[test]
    fn a_failing_route_filter_does_not_match() {
        let i = Integration::parse(BY_CONTENT, &|_| None).expect("valid config");
        // `.order.total > 1000` on a body without `order` is `null > 1000`, false in jq;
        // the negation then holds, so the event goes to `orders`, never to both.
        let body = r#"{"type":"order.created"}"#;
        assert_eq!(
            handlers_of(decide(&i, &event("shop", &[], body))),
            ["orders"]
        );
        // A run-time error (`.order.total` on a string) matches neither route.
        let body = r#"{"type":"order.created","order":"x"}"#;
        assert!(matches!(
            decide(&i, &event("shop", &[], body)),
            Decision::Unrouted {
                why: Unrouted::NoRoute { .. },
                ..
            }
        ));
    }
}
