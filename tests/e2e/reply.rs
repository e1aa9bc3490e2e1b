//! A `sync` source answers the sender with the handler's `reply` step
//! when the handler finishes within the deadline, and with the configured reply (the event
//! still processed) when it does not.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

/// Far above the fast handler's time (one 100 ms partner call plus the pipeline), well below
/// the slow one's, whose partner call still ends within the connection's 5 s timeout.
const DEADLINE: Duration = Duration::from_millis(2500);
const SLOW: Duration = Duration::from_secs(4);

const QUOTES: &str = r#"
[sources.quote]
path = "/hooks/quote"
auth = { type = "basic", username = "shop", password = "${env:SHOP_PASSWORD}" }
event_type = { header = "X-Shop-Topic" }
dedup_key = { header = "X-Shop-Delivery-Id" }
reply = { mode = "sync", deadline = "2500ms", status = 202, headers = { "Content-Type" = "application/json" }, body = '{{"id":"{event_id}","status":"pending"}}' }

[[routes]]
event = "quote.requested"
source = "quote"
handlers = ["quote"]

[handlers.quote]
[[handlers.quote.steps]]
type = "http"
connection = "erp"
path = { jq = '"/v1/quotes/\(.sku)"' }

[[handlers.quote.steps]]
type = "reply"
status = 200
headers = { "Content-Type" = "application/json", "X-Quote-For" = { jq = "$event.id" } }
body = { jq = '{ sku: .sku, price: ($event.response.body.unit_price * .qty), id: $event.id }' }
"#;

#[tokio::test]
async fn a_sync_source_answers_with_the_handlers_reply_or_the_fallback_at_the_deadline()
-> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::path("/v1/quotes/fast"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "unit_price": 7 }))
                .set_delay(Duration::from_millis(100)),
        )
        .mount(&partner)
        .await;
    Mock::given(matchers::path("/v1/quotes/slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "unit_price": 9 }))
                .set_delay(SLOW),
        )
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), QUOTES)).await?;

    // Within the deadline: the handler's reply, built from the event and the partner's answer.
    let response = stack
        .send(
            "/hooks/quote",
            "quote.requested",
            "q-1",
            &json!({"sku": "fast", "qty": 6}),
        )
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let quoted_for = response
        .headers()
        .get("x-quote-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["sku"], "fast");
    assert_eq!(body["price"], 42);
    assert_eq!(quoted_for.as_deref(), body["id"].as_str());
    assert!(
        body["id"].as_str().is_some_and(|id| id.starts_with("evt_")),
        "the event id: {body}"
    );

    // Past the deadline: the configured reply, templated with the event id.
    let sent = Instant::now();
    let response = stack
        .send(
            "/hooks/quote",
            "quote.requested",
            "q-2",
            &json!({"sku": "slow", "qty": 1}),
        )
        .await?;
    let waited = sent.elapsed();
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["status"], "pending");
    let id = body["id"].as_str().expect("an id").to_owned();
    println!("fallback reply after {waited:?} (deadline {DEADLINE:?})");
    assert!(waited >= DEADLINE, "the sender waited for the deadline");

    // The slow event is still processed: its partner call completes and it is acknowledged.
    wait_requests(&partner, "/v1/quotes/slow", 1).await?;
    hookyard_testkit::wait_for(PATIENCE, "quote handler idle", || {
        stack.handler_idle("quote")
    })
    .await?;
    let slow = requests_to(&partner, "/v1/quotes/slow").await;
    assert_eq!(slow.len(), 1, "handled once, not retried");
    assert_eq!(
        header(&slow[0], "idempotency-key").as_deref(),
        Some(format!("{id}:quote").as_str())
    );
    assert!(stack.dead_letters("quote").await?.is_empty());
    stack.stop().await;
    Ok(())
}
