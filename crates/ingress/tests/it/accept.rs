//! Accepted webhooks: what is answered and what is stored.

use std::time::Duration;

use hookyard_core::envelope::{self, HEADER_SOURCE, NATS_MSG_ID};
use hookyard_testkit::Nats;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::harness::{self, LIMIT, OPEN, PASSWORD, SHOP, USER, accepted_id};

#[tokio::test]
async fn basic_auth_webhook_is_stored_raw_with_msg_id_before_the_202() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let body: Vec<u8> = b"{\"a\":1}\x00\xff not json either".to_vec();

    let response = ingress
        .http
        .post(ingress.url(&format!("{SHOP}?x=1&y=two")))
        .basic_auth(USER, Some(PASSWORD))
        .header("X-Delivery-Id", "delivery-1")
        .header("X-Signature", HeaderValue::from_bytes(b"raw\xffbytes")?)
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(
        response
            .headers()
            .get(CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
        Some(&b"application/json"[..])
    );
    let id = accepted_id(response).await?;
    assert_eq!(id, envelope::event_id("shop", "delivery-1"));

    // The 202 came after the ack, so the message is there now, without waiting.
    let messages = ingress.messages().await?;
    assert_eq!(messages.len(), 1);
    let (headers, event) = &messages[0];
    assert_eq!(
        headers.get(NATS_MSG_ID).map(|v| v.as_str()),
        Some(id.as_str())
    );
    assert_eq!(headers.get(HEADER_SOURCE).map(|v| v.as_str()), Some("shop"));
    assert_eq!(event.id, id);
    assert_eq!(event.source, "shop");
    assert_eq!(event.method, "POST");
    assert_eq!(event.path, SHOP);
    assert_eq!(event.query, "x=1&y=two");
    assert_eq!(event.dedup_key, "delivery-1");
    assert_eq!(event.body, body);
    assert!(event.received_at_ms > 0);
    let header = |name: &str| {
        event
            .headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.clone())
    };
    assert_eq!(header("x-signature"), Some(b"raw\xffbytes".to_vec()));
    assert_eq!(header("x-delivery-id"), Some(b"delivery-1".to_vec()));
    assert_eq!(
        header("content-length"),
        Some(body.len().to_string().into_bytes())
    );
    // The verified credential is not event data (see the crate docs).
    assert_eq!(header(AUTHORIZATION.as_str()), None);
    ingress.stop().await
}

#[tokio::test]
async fn a_retried_delivery_gets_the_same_id_and_is_stored_once() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let send = |body: &'static str| {
        ingress
            .http
            .post(ingress.url(SHOP))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Delivery-Id", "delivery-7")
            .body(body)
            .send()
    };
    let first = accepted_id(send("{\"n\":1}").await?).await?;
    let second = accepted_id(send("{\"n\":1}").await?).await?;
    assert_eq!(first, second);
    assert_eq!(ingress.stored().await?, 1);

    // Without a delivery id the body hash is the key: same body, same event.
    let a = accepted_id(ingress.post_open(b"same".to_vec()).await?).await?;
    let b = accepted_id(ingress.post_open(b"same".to_vec()).await?).await?;
    let c = accepted_id(ingress.post_open(b"other".to_vec()).await?).await?;
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(ingress.stored().await?, 3);
    ingress.stop().await
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_accepted() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let id = accepted_id(ingress.post_open(vec![b'x'; LIMIT]).await?).await?;
    let messages = ingress.messages().await?;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1.id, id);
    assert_eq!(messages[0].1.body.len(), LIMIT);
    // Any configured method is accepted.
    let put = ingress.http.put(ingress.url(OPEN)).body("p").send().await?;
    assert_eq!(put.status().as_u16(), 202);
    ingress.stop().await
}
