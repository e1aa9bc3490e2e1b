//! A signed-in `order.created` webhook becomes exactly one mapped, authorised
//! `POST /v1/orders` at the partner; a second event reuses the cached token.

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

const ORDERS: &str = r#"
[[routes]]
event = "order.created"
handlers = ["orders"]

[handlers.orders]
max_deliver = 3
backoff = ["100ms"]

[[handlers.orders.steps]]
type = "http"
connection = "erp"
method = "POST"
path = "/v1/orders"
body = { jq = "{ external_id: .order.id, total: .order.total, skus: [.order.lines[].sku], event: $event.id }" }
"#;

#[tokio::test]
async fn order_created_reaches_partner_once_mapped_with_bearer_token() -> anyhow::Result<()> {
    let auth = auth_server("token-from-as-1", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/orders"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;

    let order =
        json!({"order": {"id": "o-1001", "total": 42.5, "lines": [{"sku": "A"}, {"sku": "B"}]}});
    let id = stack
        .accepted("order.created", "delivery-1", &order)
        .await?;

    wait_requests(&partner, "/v1/orders", 1).await?;
    // Wait until the worker has acknowledged the work, then check nothing else was sent.
    hookyard_testkit::wait_for(PATIENCE, "orders handler idle", || {
        stack.handler_idle("orders")
    })
    .await?;
    let calls = requests_to(&partner, "/v1/orders").await;
    assert_eq!(calls.len(), 1, "exactly one POST for one event");
    let call = &calls[0];
    assert_eq!(call.method.as_str(), "POST");
    assert_eq!(
        header(call, "authorization").as_deref(),
        Some("Bearer token-from-as-1")
    );
    assert_eq!(
        header(call, "idempotency-key"),
        Some(format!("{id}:orders"))
    );
    let body: serde_json::Value = serde_json::from_slice(&call.body)?;
    assert_eq!(
        body,
        json!({"external_id": "o-1001", "total": 42.5, "skus": ["A", "B"], "event": id})
    );
    assert_eq!(auth.received_requests().await.unwrap_or_default().len(), 1);

    // A second event within the token's lifetime: delivered, no new token request.
    let order2 = json!({"order": {"id": "o-1002", "total": 1, "lines": []}});
    let id2 = stack
        .accepted("order.created", "delivery-2", &order2)
        .await?;
    assert_ne!(id, id2);
    wait_requests(&partner, "/v1/orders", 2).await?;
    let calls = requests_to(&partner, "/v1/orders").await;
    assert_eq!(
        header(&calls[1], "authorization").as_deref(),
        Some("Bearer token-from-as-1")
    );
    assert_eq!(
        auth.received_requests().await.unwrap_or_default().len(),
        1,
        "the cached token is reused"
    );

    // Every service counted what it did, on its own /metrics.
    hookyard_testkit::wait_for(PATIENCE, "orders handler idle", || {
        stack.handler_idle("orders")
    })
    .await?;
    for (base, series) in [
        (
            &stack.ingress,
            r#"hookyard_ingress_requests_total{source="shop",outcome="accepted"}"#,
        ),
        (
            &stack.router,
            r#"hookyard_router_events_total{source="shop",outcome="routed"}"#,
        ),
        (
            &stack.router,
            r#"hookyard_router_work_total{handler="orders",stored="work"}"#,
        ),
        (
            &stack.worker,
            r#"hookyard_worker_deliveries_total{handler="orders",outcome="handled"}"#,
        ),
        (
            &stack.worker,
            r#"hookyard_worker_attempt_seconds_count{handler="orders"}"#,
        ),
        (
            &stack.egress,
            r#"hookyard_egress_calls_total{connection="erp",outcome="2xx"}"#,
        ),
        (
            &stack.token,
            r#"hookyard_token_requests_total{connection="erp",outcome="ok"}"#,
        ),
    ] {
        assert_eq!(stack.metric(base, series).await?, 2, "{series}");
    }
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn sender_retry_of_the_same_delivery_is_processed_once() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;
    let order = json!({"order": {"id": "o-1", "total": 1, "lines": []}});
    let a = stack
        .accepted("order.created", "same-delivery", &order)
        .await?;
    let b = stack
        .accepted("order.created", "same-delivery", &order)
        .await?;
    assert_eq!(a, b, "a retried delivery keeps its event id");
    wait_requests(&partner, "/v1/orders", 1).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders handler idle", || {
        stack.handler_idle("orders")
    })
    .await?;
    assert_eq!(requests_to(&partner, "/v1/orders").await.len(), 1);
    assert_eq!(stack.stream_len(&stack.topology.in_stream()).await?, 1);
    stack.stop().await;
    Ok(())
}
