//! An operator in Chromium: signs in, finds an event and its deliveries, replays its dead
//! letter (the partner receives it), pauses and resumes a handler, and sends a test request
//! (method, path, a header and a body) on a connection — with a screenshot of each page.

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use super::{Browser, handler_status};
use crate::{harness::*, operate::num};

/// The partner back: orders answer 201, `/v1/ping` answers with a body and a credential header.
async fn partner_back(partner: &MockServer) {
    partner.reset().await;
    Mock::given(matchers::path("/v1/ping"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-api-key", "partner-secret-value")
                .insert_header("x-request-id", "req-42")
                .set_body_string("pong <b>bold</b>"),
        )
        .with_priority(1)
        .mount(partner)
        .await;
    crate::operate::answer_all(partner, 201).await;
}

#[tokio::test]
async fn an_operator_works_through_the_console_in_a_browser() -> anyhow::Result<()> {
    let (stack, partner, _auth) = crate::operate::stack_with_orders_down().await?;
    let id = stack
        .accepted("order.created", "c-1", &json!({"order": {"id": "c-1"}}))
        .await?;
    hookyard_testkit::wait_for(PATIENCE, "a dead letter for orders", || async {
        stack
            .dead_letters("orders")
            .await
            .is_ok_and(|d| d.len() == 1)
    })
    .await?;

    let b = Browser::start().await?;
    sign_in(&b, &stack).await?;
    find_the_event(&b, &id).await?;
    replay_its_dead_letter(&b, &stack, &partner, &id).await?;
    pause_and_resume(&b, &stack).await?;
    send_a_test_request(&b, &partner).await?;
    b.close().await;
    stack.stop().await;
    Ok(())
}

async fn sign_in(b: &Browser, stack: &Stack) -> anyhow::Result<()> {
    b.client.goto(&format!("{}/console", stack.admin)).await?;
    b.wait_for("input[name=token]")
        .await?
        .send_keys(ADMIN_TOKEN)
        .await?;
    b.shot("01-sign-in").await?;
    b.click(
        "form[action='/console/sign-in'] button",
        "form[action='/console/events']",
    )
    .await
}

/// Searches by source and type, opens the event, sees both handlers' deliveries.
async fn find_the_event(b: &Browser, id: &str) -> anyhow::Result<()> {
    b.wait_for("input[name=source]")
        .await?
        .send_keys("shop")
        .await?;
    b.wait_for("input[name=type]")
        .await?
        .send_keys("order.*")
        .await?;
    let link = format!("a[href='/console/events/{id}']");
    b.click("form[action='/console/events'] button", &link)
        .await?;
    b.shot("02-events").await?;

    b.click(&link, "#handler-orders").await?;
    assert_eq!(b.text("#handler-orders .state").await?, "dead_lettered");
    assert_eq!(b.text("#handler-audit .state").await?, "handled");
    let answers = b
        .client
        .find_all(fantoccini::Locator::Css("#handler-orders td.answer"))
        .await?;
    assert!(answers.len() >= 2, "every attempt at the partner is shown");
    for answer in answers {
        assert_eq!(answer.text().await?, "503");
    }
    b.shot("03-event").await
}

async fn replay_its_dead_letter(
    b: &Browser,
    stack: &Stack,
    partner: &MockServer,
    id: &str,
) -> anyhow::Result<()> {
    b.click("nav a[href='/console/dead-letters']", "table.dead-letters")
        .await?;
    b.shot("04-dead-letters").await?;
    partner_back(partner).await;
    b.click("button.replay", ".replayed").await?;
    let replayed = b.text(".replayed").await?;
    assert!(
        replayed.starts_with("1 work item(s) sent, 1 dead letter(s) removed"),
        "{replayed}"
    );
    b.shot("05-replayed").await?;
    wait_requests(partner, "/v1/orders", 1).await?;
    let call = &requests_to(partner, "/v1/orders").await[0];
    assert_eq!(
        header(call, "idempotency-key"),
        Some(format!("{id}:orders"))
    );
    assert!(
        stack.dead_letters("orders").await?.is_empty(),
        "the letter is gone"
    );
    Ok(())
}

async fn pause_and_resume(b: &Browser, stack: &Stack) -> anyhow::Result<()> {
    // Two failed attempts and the replayed delivery, once the last outcome is recorded.
    hookyard_testkit::wait_for(PATIENCE, "orders' three deliveries in its rate", || async {
        handler_status(stack, "orders").await.is_ok_and(|h| {
            num(&h["deliveries_last_minute"]) == 3 && num(&h["failures_last_minute"]) == 2
        })
    })
    .await?;
    b.click(
        "nav a[href='/console/handlers']",
        "#handler-orders button.pause",
    )
    .await?;
    b.click(
        "#handler-orders button.pause",
        "#handler-orders button.resume",
    )
    .await?;
    assert_eq!(b.text("#handler-orders td.rate").await?, "3/min");
    assert_eq!(b.text("#handler-orders td.errors").await?, "2/min");
    assert_eq!(
        b.text("#handler-orders td.state").await?,
        "paused until resumed"
    );
    assert_eq!(handler_status(stack, "orders").await?["paused"], true);
    b.shot("06-handler-paused").await?;
    b.click(
        "#handler-orders button.resume",
        "#handler-orders button.pause",
    )
    .await?;
    assert_eq!(b.text("#handler-orders td.state").await?, "running");
    assert_eq!(handler_status(stack, "orders").await?["paused"], false);
    Ok(())
}

async fn send_a_test_request(b: &Browser, partner: &MockServer) -> anyhow::Result<()> {
    b.click("nav a[href='/console/connections']", "#connection-erp")
        .await?;
    assert_eq!(
        b.text("#connection-erp .kind").await?,
        "oauth2_client_credentials"
    );
    b.shot("07-connections").await?;
    let path = b.wait_for("#connection-erp input[name=path]").await?;
    path.clear().await?;
    path.send_keys("/v1/ping?probe=1").await?;
    b.wait_for("#connection-erp select[name=method]")
        .await?
        .select_by_label("POST")
        .await?;
    b.wait_for("#connection-erp textarea[name=headers]")
        .await?
        .send_keys("X-Probe: from-the-console")
        .await?;
    b.wait_for("#connection-erp textarea[name=body]")
        .await?
        .send_keys(r#"{"probe": true}"#)
        .await?;
    b.click("#connection-erp form.test button", ".answer")
        .await?;
    assert_eq!(b.text(".answer .status").await?, "200");
    let page = b.client.source().await?;
    assert!(
        page.contains("pong &lt;b&gt;bold&lt;/b&gt;"),
        "the answer's body, escaped"
    );
    assert!(page.contains("req-42"), "harmless headers are shown");
    assert!(
        !page.contains("partner-secret-value"),
        "credential headers are not"
    );
    assert!(!page.contains(ADMIN_TOKEN));
    b.shot("08-test-request").await?;
    let calls = requests_to(partner, "/v1/ping").await;
    assert_eq!(calls.len(), 1, "one test request, never retried");
    assert_eq!(calls[0].method.as_str(), "POST");
    assert_eq!(
        header(&calls[0], "x-probe").as_deref(),
        Some("from-the-console")
    );
    assert_eq!(calls[0].body, br#"{"probe": true}"#);
    Ok(())
}
