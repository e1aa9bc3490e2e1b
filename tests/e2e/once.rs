//! The same Stripe event sent three times — at once, after the stream's
//! duplicate window, and to a second ingress replica — is stored once and processed once. The
//! source has no `dedup_key`: the Stripe signature scheme brings the `stripe` preset (the
//! event's `id`), and every delivery is signed anew, as Stripe does for a retry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use hookyard_testkit::wait_for;
use serde_json::json;
use sha2::Sha256;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

const STRIPE: &str = r#"
[sources.stripe]
path = "/hooks/stripe"
signature = { scheme = "stripe", secrets = ["${env:STRIPE_WEBHOOK_SECRET}"] }
event_type = { jq = ".type" }

[[routes]]
event = "payment_intent.succeeded"
source = "stripe"
handlers = ["payments"]

[handlers.payments]
[[handlers.payments.steps]]
type = "http"
connection = "erp"
path = "/v1/payments"
"#;

/// The stream's duplicate window here, short so the test can wait it out.
const STREAM_WINDOW: Duration = Duration::from_secs(1);

/// `Stripe-Signature` for `body` at `timestamp`, computed with the `hmac` crate as Stripe's
/// documentation describes: HMAC-SHA256 of `"{t}.{body}"` with the signing secret.
fn stripe_signature(body: &str, timestamp: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(STRIPE_WEBHOOK_SECRET.as_bytes())
        .expect("hmac takes any key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

async fn deliver(
    stack: &Stack,
    ingress: &str,
    body: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let response = stack
        .http()
        .post(format!("{ingress}/hooks/stripe"))
        .header("Stripe-Signature", stripe_signature(body, now))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn a_stripe_event_sent_three_ways_is_stored_once_and_processed_once() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::path("/v1/payments"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let mut stack = Stack::start_with(&shop_config(&partner.uri(), &auth.uri(), STRIPE), |t| {
        t.limits.duplicate_window = STREAM_WINDOW;
    })
    .await?;
    let event = json!({
        "id": "evt_3MtwBwLkdIwHu7ix28a3tqPa",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": { "object": { "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 2000 } }
    })
    .to_string();
    let first_ingress = stack.ingress.clone();

    // (1) Twice at once.
    let (status, first) = deliver(&stack, &first_ingress, &event).await?;
    assert_eq!(status, 202);
    let id = first["id"].as_str().expect("an id").to_owned();
    let (status, again) = deliver(&stack, &first_ingress, &event).await?;
    assert_eq!((status, again["id"].as_str()), (202, Some(id.as_str())));
    wait_requests(&partner, "/v1/payments", 1).await?;

    // (2) After the stream's duplicate window: the elapsed time is the condition under test.
    tokio::time::sleep(STREAM_WINDOW + Duration::from_millis(500)).await;
    let (status, later) = deliver(&stack, &first_ingress, &event).await?;
    assert_eq!((status, later["id"].as_str()), (202, Some(id.as_str())));

    // (3) To a second ingress replica.
    let second_ingress = stack.add_ingress().await?;
    let (status, other) = deliver(&stack, &second_ingress, &event).await?;
    assert_eq!((status, other["id"].as_str()), (202, Some(id.as_str())));

    // Everything sent has been read and handled before counting.
    wait_for(PATIENCE, "router and handler idle", || async {
        stack.router_idle().await && stack.handler_idle("payments").await
    })
    .await?;
    assert_eq!(
        stack.stream_len(&stack.topology.in_stream()).await?,
        1,
        "stored once"
    );
    let calls = requests_to(&partner, "/v1/payments").await;
    assert_eq!(calls.len(), 1, "processed once");
    assert_eq!(
        header(&calls[0], "idempotency-key").as_deref(),
        Some(format!("{id}:payments").as_str())
    );
    stack.stop().await;
    Ok(())
}
