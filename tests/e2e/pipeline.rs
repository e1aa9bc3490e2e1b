//! A handler as a pipeline: a retry resumes at the step that failed, a `publish` step starts
//! another handler exactly once per event, an XML answer feeds the next step's form body, and a
//! route's `when` sends events by their content.

use async_nats::HeaderMap;
use futures::StreamExt as _;
use hookyard_proto::event::v1::{Envelope, WorkItem};
use prost::Message as _;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

#[tokio::test]
async fn a_retry_resumes_at_the_failed_step_without_repeating_the_ones_before() -> anyhow::Result<()>
{
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/orders"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "erp-7"})))
        .mount(&partner)
        .await;
    fail_first(&partner, "/v1/orders/erp-7/lines", 2).await;
    Mock::given(matchers::method("PUT"))
        .and(matchers::path("/v1/orders/erp-7/lines"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&partner)
        .await;
    let handler = r#"
[[routes]]
event = "order.created"
handlers = ["orders"]

[handlers.orders]
backoff = ["200ms"]

[[handlers.orders.steps]]
type = "http"
name = "create"
connection = "erp"
path = "/v1/orders"

[[handlers.orders.steps]]
type = "http"
name = "lines"
connection = "erp"
method = "PUT"
path = { jq = '"/v1/orders/\($steps.create.body.id)/lines"' }
body = { jq = '{ lines: .order.lines }' }

[[handlers.orders.steps]]
type = "reply"
body = { jq = '{ erp: $steps.create.body.id, lines: $steps.lines.status }' }
"#;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), handler)).await?;
    let mut replies = stack
        .client
        .subscribe(stack.topology.reply_subject("*"))
        .await?;

    stack
        .accepted(
            "order.created",
            "resume-1",
            &json!({"order": {"lines": [1, 2]}}),
        )
        .await?;
    wait_requests(&partner, "/v1/orders/erp-7/lines", 3).await?;
    let reply = tokio::time::timeout(PATIENCE, replies.next())
        .await?
        .expect("a reply");
    hookyard_testkit::wait_for(PATIENCE, "orders idle", || stack.handler_idle("orders")).await?;

    assert_eq!(
        requests_to(&partner, "/v1/orders").await.len(),
        1,
        "the first step ran once"
    );
    assert_eq!(
        requests_to(&partner, "/v1/orders/erp-7/lines").await.len(),
        3,
        "the failing step ran three times"
    );
    let reply = hookyard_proto::event::v1::Reply::decode(reply.payload)?;
    let body: Value = serde_json::from_slice(&reply.body)?;
    assert_eq!(body, json!({"erp": "erp-7", "lines": 200}));
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), replies.next())
            .await
            .is_err(),
        "the reply went out once"
    );
    assert!(stack.dead_letters("orders").await?.is_empty());
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_published_event_starts_its_handler_once_even_when_the_publisher_is_redelivered()
-> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    fail_first(&partner, "/v1/a-done", 1).await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .with_priority(2)
        .mount(&partner)
        .await;
    let handlers = r#"
[[routes]]
event = "order.created"
handlers = ["a"]

[[routes]]
event = "order.enriched"
handlers = ["b"]

[handlers.a]
backoff = ["200ms"]

[[handlers.a.steps]]
type = "publish"
name = "enriched"
event_type = "order.enriched"
body = { jq = '{ order: .order, enriched: true }' }

[[handlers.a.steps]]
type = "http"
connection = "erp"
path = "/v1/a-done"

[handlers.b]
[[handlers.b.steps]]
type = "http"
connection = "erp"
path = { jq = '"/v1/b/\(.order.id)"' }
body = { jq = '{ id: .order.id, enriched: .enriched, parent: $event.id }' }
"#;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), handlers)).await?;
    let id = stack
        .accepted("order.created", "pub-1", &json!({"order": {"id": "o-1"}}))
        .await?;
    // A fails once after publishing, so it is redelivered; B is called once.
    wait_requests(&partner, "/v1/a-done", 2).await?;
    wait_requests(&partner, "/v1/b/o-1", 1).await?;
    for h in ["a", "b"] {
        hookyard_testkit::wait_for(PATIENCE, "handlers idle", || stack.handler_idle(h)).await?;
    }

    // The same work item delivered again with no progress kept (as after a crash right after
    // the publish): the published event is the same one, and the stream refuses it again.
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut input = js.get_stream(stack.topology.in_stream()).await?;
    let first = input.get_raw_message(1).await?;
    let event = Envelope::decode(first.payload)?;
    assert_eq!(event.id, id);
    let item = WorkItem {
        event: Some(event),
        handler: "a".to_owned(),
        event_type: "order.created".to_owned(),
        ..Default::default()
    };
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "a-redelivered-by-hand");
    js.publish_with_headers(
        stack.topology.work_subject("a"),
        headers,
        item.encode_to_vec().into(),
    )
    .await?
    .await?;
    wait_requests(&partner, "/v1/a-done", 3).await?;
    hookyard_testkit::wait_for(PATIENCE, "a idle", || stack.handler_idle("a")).await?;
    hookyard_testkit::wait_for(PATIENCE, "router idle", || stack.router_idle()).await?;
    hookyard_testkit::wait_for(PATIENCE, "b idle", || stack.handler_idle("b")).await?;

    let calls = requests_to(&partner, "/v1/b/o-1").await;
    assert_eq!(calls.len(), 1, "B's partner is called once per A event");
    let body: Value = serde_json::from_slice(&calls[0].body)?;
    assert_eq!(body["id"], "o-1");
    assert_eq!(body["enriched"], true);
    assert_ne!(
        body["parent"],
        json!(id),
        "B sees the published event, with its own id"
    );
    assert_eq!(
        input.info().await?.state.messages,
        2,
        "the webhook and one published event"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn xml_answers_feed_form_bodies_and_routes_choose_by_content() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v1/stock"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"<?xml version="1.0"?><stock><item sku="A-1"><qty>3</qty></item></stock>"#,
            "application/xml",
        ))
        .mount(&partner)
        .await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let handlers = r#"
[[routes]]
event = "order.created"
handlers = ["big-orders"]
when = { jq = ".order.total > 1000" }

[[routes]]
event = "order.created"
handlers = ["orders"]
when = { jq = ".order.total <= 1000" }

[handlers.orders]
[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/small"

[handlers.big-orders]
[[handlers.big-orders.steps]]
type = "http"
name = "stock"
connection = "erp"
method = "GET"
path = "/v1/stock"

[[handlers.big-orders.steps]]
type = "http"
connection = "erp"
path = "/v1/reserve"
body = { jq = '{ sku: $steps.stock.body.stock.item["@sku"], qty: $steps.stock.body.stock.item.qty, order: .order.id }' }
body_format = "form"
"#;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), handlers)).await?;
    for (n, total) in [1500, 50, 1001, 1000].into_iter().enumerate() {
        let body = json!({"order": {"id": format!("o-{n}"), "total": total}});
        stack
            .accepted("order.created", &format!("when-{n}"), &body)
            .await?;
    }
    wait_requests(&partner, "/v1/reserve", 2).await?;
    wait_requests(&partner, "/v1/small", 2).await?;
    for h in ["orders", "big-orders"] {
        hookyard_testkit::wait_for(PATIENCE, "handlers idle", || stack.handler_idle(h)).await?;
    }

    let small = requests_to(&partner, "/v1/small").await;
    let small_ids: Vec<String> = small
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v["order"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(counts(small_ids).len(), 2);
    let mut reserved: Vec<String> = requests_to(&partner, "/v1/reserve")
        .await
        .iter()
        .map(|r| {
            assert_eq!(
                header(r, "content-type").as_deref(),
                Some("application/x-www-form-urlencoded")
            );
            String::from_utf8_lossy(&r.body).into_owned()
        })
        .collect();
    reserved.sort();
    assert_eq!(
        reserved,
        ["order=o-0&qty=3&sku=A-1", "order=o-2&qty=3&sku=A-1"]
    );
    assert_eq!(requests_to(&partner, "/v1/stock").await.len(), 2);
    stack.stop().await;
    Ok(())
}
