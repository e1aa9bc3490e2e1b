//! `GET /metrics`: request outcomes per source and the store latency, in OpenMetrics text.

use std::time::Duration;

use hookyard_testkit::Nats;

use crate::harness::{self, PASSWORD, SHOP, USER, accepted_id};

#[tokio::test]
async fn metrics_count_outcomes_per_source_and_time_the_stores() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let post = |password: &str, delivery: &str| {
        ingress
            .http
            .post(ingress.url(SHOP))
            .basic_auth(USER, Some(password))
            .header("X-Delivery-Id", delivery)
            .body("{}")
            .send()
    };
    accepted_id(post(PASSWORD, "m-1").await?).await?;
    accepted_id(post(PASSWORD, "m-1").await?).await?;
    assert_eq!(post("wrong", "m-2").await?.status().as_u16(), 401);
    assert_eq!(ingress.status("/nowhere").await, Some(404));

    let response = ingress.http.get(ingress.url("/metrics")).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await?;
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let shop = |outcome: &str| {
        value(&format!(
            r#"hookyard_ingress_requests_total{{source="shop",outcome="{outcome}"}} "#
        ))
    };
    assert_eq!(shop("unauthorized"), 1, "{text}");
    assert_eq!(
        value(r#"hookyard_ingress_requests_total{source="",outcome="not_found"} "#),
        1
    );
    // The repeat is answered from the dedup bucket once its id is recorded (in the background),
    // else it is published again and collapsed by the stream: a duplicate or a second accept.
    assert_eq!(shop("accepted") + shop("duplicate"), 2, "{text}");
    assert_eq!(
        value(r#"hookyard_ingress_store_seconds_count{source="shop"} "#),
        shop("accepted"),
        "one store time per published event: {text}"
    );
    ingress.stop().await
}
