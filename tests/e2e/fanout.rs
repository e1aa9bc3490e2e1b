//! One event routed to two handlers reaches both; an unrouted event lands in the
//! unrouted dead-letter subject with its reason.

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

const FANOUT: &str = r#"
[[routes]]
event = "order.created"
handlers = ["orders"]

[[routes]]
event = "order.*"
handlers = ["audit"]

[handlers.orders]
[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/orders"

[handlers.audit]
[[handlers.audit.steps]]
type = "http"
connection = "erp"
path = { jq = "\"/v1/audit/\" + $event.type" }
body = { jq = "{ order: .order.id }" }
"#;

#[tokio::test]
async fn one_event_reaches_every_handler_it_routes_to() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), FANOUT)).await?;

    let body = json!({"order": {"id": "o-7"}});
    let id = stack.accepted("order.created", "d-1", &body).await?;
    wait_requests(&partner, "/v1/orders", 1).await?;
    wait_requests(&partner, "/v1/audit/order.created", 1).await?;
    for h in ["orders", "audit"] {
        hookyard_testkit::wait_for(PATIENCE, "handlers idle", || stack.handler_idle(h)).await?;
    }
    let orders = requests_to(&partner, "/v1/orders").await;
    let audit = requests_to(&partner, "/v1/audit/order.created").await;
    assert_eq!((orders.len(), audit.len()), (1, 1));
    // The orders handler forwards the body as received; audit maps it.
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&orders[0].body)?,
        body
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&audit[0].body)?,
        json!({"order": "o-7"})
    );
    assert_eq!(
        header(&orders[0], "idempotency-key"),
        Some(format!("{id}:orders"))
    );
    assert_eq!(
        header(&audit[0], "idempotency-key"),
        Some(format!("{id}:audit"))
    );

    // order.cancelled matches only the pattern route.
    stack.accepted("order.cancelled", "d-2", &body).await?;
    wait_requests(&partner, "/v1/audit/order.cancelled", 1).await?;
    hookyard_testkit::wait_for(PATIENCE, "audit idle", || stack.handler_idle("audit")).await?;
    assert_eq!(requests_to(&partner, "/v1/orders").await.len(), 1);
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn unrouted_event_is_dead_lettered_with_reason() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), FANOUT)).await?;

    let id = stack
        .accepted("customer.deleted", "d-9", &json!({"customer": 1}))
        .await?;
    hookyard_testkit::wait_for(PATIENCE, "unrouted dead letter", || async {
        !stack
            .dead_letters("unrouted")
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await?;
    let letters = stack.dead_letters("unrouted").await?;
    assert_eq!(letters.len(), 1);
    let dl = &letters[0];
    assert_eq!(dl.reason, "unrouted");
    assert_eq!(dl.event_type, "customer.deleted");
    assert!(!dl.error.is_empty(), "the reason says why");
    let event = dl.event.as_ref().expect("dead letter carries the event");
    assert_eq!(event.id, id);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&event.body)?,
        json!({"customer": 1})
    );
    assert!(
        partner
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
    stack.stop().await;
    Ok(())
}
