//! Retryable partner failures are retried with the same idempotency key until
//! they succeed; a partner that always fails ends in `hookyard.dlq.<handler>` after
//! `max_deliver` attempts, with the status it returned.

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

const ORDERS: &str = r#"
[[routes]]
event = "order.created"
handlers = ["orders"]

[handlers.orders]
max_deliver = 3
backoff = ["200ms", "400ms"]

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/orders"
"#;

#[tokio::test]
async fn two_503s_then_201_is_delivered_with_one_idempotency_key() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    fail_first(&partner, "/v1/orders", 2).await;
    Mock::given(matchers::path("/v1/orders"))
        .respond_with(ResponseTemplate::new(201))
        .with_priority(2)
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;

    let id = stack
        .accepted("order.created", "r-1", &json!({"order": {"id": "o-1"}}))
        .await?;
    wait_requests(&partner, "/v1/orders", 3).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders handler idle", || {
        stack.handler_idle("orders")
    })
    .await?;

    let calls = requests_to(&partner, "/v1/orders").await;
    assert_eq!(calls.len(), 3, "one call per attempt");
    let keys = counts(calls.iter().filter_map(|c| header(c, "idempotency-key")));
    assert_eq!(keys.len(), 1, "every attempt carries the same key");
    assert_eq!(keys.get(&format!("{id}:orders")), Some(&3));
    assert!(
        stack.dead_letters("orders").await?.is_empty(),
        "nothing dead-lettered"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn always_failing_partner_ends_in_the_handlers_dead_letters() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::path("/v1/orders"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;

    let id = stack
        .accepted("order.created", "r-2", &json!({"order": {"id": "o-2"}}))
        .await?;
    hookyard_testkit::wait_for(PATIENCE, "dead letter for orders", || async {
        !stack
            .dead_letters("orders")
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await?;
    hookyard_testkit::wait_for(PATIENCE, "orders handler idle", || {
        stack.handler_idle("orders")
    })
    .await?;
    let letters = stack.dead_letters("orders").await?;
    assert_eq!(letters.len(), 1);
    let dl = &letters[0];
    assert_eq!(dl.handler, "orders");
    assert_eq!(dl.reason, "retries_exhausted");
    assert_eq!(dl.last_status, 500);
    assert_eq!(dl.attempts, 3);
    assert_eq!(dl.event.as_ref().map(|e| e.id.as_str()), Some(id.as_str()));
    assert_eq!(
        requests_to(&partner, "/v1/orders").await.len(),
        3,
        "max_deliver attempts"
    );
    stack.stop().await;
    Ok(())
}

/// Fails with 500 until `until`, then answers 201: a partner outage of a fixed length.
struct DownUntil(std::time::Instant);

impl wiremock::Respond for DownUntil {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        if std::time::Instant::now() < self.0 {
            ResponseTemplate::new(500)
        } else {
            ResponseTemplate::new(201)
        }
    }
}

/// A partner down for 3 s behind a breaker that opens at the first failure: what arrives while
/// it is open waits for the breaker instead of spending its deliveries, and nothing is
/// dead-lettered — although the handler allows fewer deliveries than the waits take.
#[tokio::test]
async fn a_three_second_outage_behind_an_open_breaker_dead_letters_nothing() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    let down_for = std::time::Duration::from_secs(3);
    Mock::given(matchers::path("/v1/orders"))
        .respond_with(DownUntil(std::time::Instant::now() + down_for))
        .mount(&partner)
        .await;
    let handler = r#"
[[routes]]
event = "order.created"
handlers = ["orders"]

[handlers.orders]
max_deliver = 4
backoff = ["100ms"]

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/orders"

[connections.erp.breaker]
failures = 1
cool_down = "1s"

[connections.erp.retry]
max_attempts = 1
"#;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), handler)).await?;
    let events = 20;
    for n in 0..events {
        stack
            .accepted(
                "order.created",
                &format!("blip-{n}"),
                &json!({"order": {"id": format!("o-{n}")}}),
            )
            .await?;
    }
    hookyard_testkit::wait_for(PATIENCE, "every event delivered", || async {
        let delivered = requests_to(&partner, "/v1/orders").await;
        delivered
            .iter()
            .filter(|r| r.headers.get("idempotency-key").is_some())
            .count()
            >= events
            && stack.handler_idle("orders").await
    })
    .await?;
    let waited = stack
        .metric(
            &stack.worker,
            r#"hookyard_worker_deliveries_total{handler="orders",outcome="wait"}"#,
        )
        .await?;
    assert!(waited > 0, "the breaker was open while events arrived");
    assert!(stack.dead_letters("orders").await?.is_empty());
    let handled = stack
        .metric(
            &stack.worker,
            r#"hookyard_worker_deliveries_total{handler="orders",outcome="handled"}"#,
        )
        .await?;
    assert_eq!(handled, events as u64);
    stack.stop().await;
    Ok(())
}
