use std::time::Duration;

use serde_json::{Value, json};

use crate::{BASIC_PASSWORD, BASIC_USER, settings, spawn};

#[tokio::test]
async fn call_with_issued_bearer_is_accepted_and_recorded() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let token = demo.token().await?;
    let response = demo
        .http
        .post(demo.url("/v1/orders?source=shop"))
        .bearer_auth(&token)
        .header("idempotency-key", "evt_1:orders")
        .json(&json!({ "order": 42, "items": ["a"] }))
        .send()
        .await?;
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await?, json!({ "received": 1 }));

    let calls = demo.calls("").await?;
    assert_eq!(calls["token_requests"], 1);
    let call = &calls["calls"][0];
    assert_eq!(call["seq"], 1);
    assert_eq!(call["method"], "POST");
    assert_eq!(call["path"], "/v1/orders");
    assert_eq!(call["query"], "source=shop");
    assert_eq!(call["idempotency_key"], "evt_1:orders");
    assert_eq!(call["auth"], "bearer");
    assert_eq!(call["body"], json!({ "order": 42, "items": ["a"] }));
    assert_eq!(call["status"], 201);
    assert!(call["received_at_ms"].as_u64().is_some_and(|ms| ms > 0));
    Ok(())
}

#[tokio::test]
async fn call_with_basic_credentials_is_recorded_as_basic() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let response = demo
        .http
        .put(demo.url("/v1/customers/7"))
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .body("plain text")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let call = &demo.recorded().await?[0];
    assert_eq!(call["auth"], "basic");
    assert_eq!(call["method"], "PUT");
    assert_eq!(call["body"], "plain text");
    assert_eq!(call["idempotency_key"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn call_without_credentials_is_refused_and_recorded_as_none() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let response = demo
        .http
        .post(demo.url("/v1/orders"))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await?,
        json!({ "error": "unauthorized" })
    );
    let calls = demo.recorded().await?;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["auth"], "none");
    assert_eq!(calls[0]["status"], 401);
    Ok(())
}

#[tokio::test]
async fn forged_bearer_and_wrong_password_are_refused_as_invalid() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let forged = demo
        .http
        .post(demo.url("/v1/orders"))
        .bearer_auth("forged-token")
        .send()
        .await?;
    assert_eq!(forged.status(), 401);
    let wrong_password = demo
        .http
        .post(demo.url("/v1/orders"))
        .basic_auth(BASIC_USER, Some("nope"))
        .send()
        .await?;
    assert_eq!(wrong_password.status(), 401);
    let auths: Vec<Value> = demo
        .recorded()
        .await?
        .iter()
        .map(|c| c["auth"].clone())
        .collect();
    assert_eq!(auths, [json!("invalid"), json!("invalid")]);
    Ok(())
}

/// A zero ttl makes a token expire the instant it is issued; the unit tests in `tokens` cover
/// expiry at a chosen instant.
#[tokio::test]
async fn expired_token_is_refused_as_invalid() -> anyhow::Result<()> {
    let mut settings = settings();
    settings.token_ttl = Duration::ZERO;
    let demo = spawn(settings).await?;
    let token = demo.token().await?;
    let response = demo
        .http
        .post(demo.url("/v1/orders"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(response.status(), 401);
    assert_eq!(demo.recorded().await?[0]["auth"], "invalid");
    Ok(())
}

#[tokio::test]
async fn demo_status_header_injects_that_status() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let token = demo.token().await?;
    let response = demo
        .http
        .post(demo.url("/v1/orders"))
        .bearer_auth(&token)
        .header("x-demo-status", "503")
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    let call = &demo.recorded().await?[0];
    assert_eq!(call["status"], 503);
    assert_eq!(call["auth"], "bearer");
    Ok(())
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413_and_one_mebibyte_is_accepted() -> anyhow::Result<()> {
    const MIB: usize = 1024 * 1024;
    let demo = spawn(settings()).await?;
    let token = demo.token().await?;
    let send = |size: usize| {
        demo.http
            .post(demo.url("/v1/uploads"))
            .bearer_auth(&token)
            .body(vec![b'a'; size])
            .send()
    };
    assert_eq!(send(MIB + 1).await?.status(), 413);
    assert_eq!(send(MIB).await?.status(), 201);
    let statuses: Vec<Value> = demo
        .recorded()
        .await?
        .iter()
        .map(|c| c["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(413), json!(201)]);
    Ok(())
}
