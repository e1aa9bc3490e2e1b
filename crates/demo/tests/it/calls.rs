use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use crate::{BASIC_PASSWORD, BASIC_USER, CLIENT_ID, CLIENT_SECRET, settings, spawn};

#[tokio::test]
async fn calls_output_never_contains_tokens_or_passwords() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let token = demo.token().await?;
    let post_token = demo
        .http
        .post(demo.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await?;
    assert_eq!(post_token.status(), 200);
    demo.http
        .post(demo.url("/v1/orders"))
        .bearer_auth(&token)
        .send()
        .await?;
    demo.http
        .get(demo.url("/v1/orders"))
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .send()
        .await?;
    demo.http
        .get(demo.url("/v1/orders"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await?;

    let text = demo.calls_text("").await?;
    assert_eq!(
        serde_json::from_str::<Value>(&text)?["calls"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let basic = STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"));
    for secret in [
        token.as_str(),
        CLIENT_SECRET,
        BASIC_PASSWORD,
        basic.as_str(),
        "Bearer",
        "Basic ",
    ] {
        assert!(!text.contains(secret), "/_demo/calls leaks {secret:?}");
    }
    Ok(())
}

#[tokio::test]
async fn path_prefix_filters_and_delete_resets_calls_and_counter() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let token = demo.token().await?;
    for path in ["/v1/orders", "/v1/customers", "/v1/orders/7"] {
        demo.http
            .post(demo.url(path))
            .bearer_auth(&token)
            .send()
            .await?;
    }
    let orders = demo.calls("?path_prefix=/v1/orders").await?;
    let paths: Vec<Value> = orders["calls"]
        .as_array()
        .map(|calls| calls.iter().map(|c| c["path"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(paths, [json!("/v1/orders"), json!("/v1/orders/7")]);

    let cleared = demo.http.delete(demo.url("/_demo/calls")).send().await?;
    assert!(cleared.status().is_success());
    assert_eq!(
        demo.calls("").await?,
        json!({ "token_requests": 0, "calls": [] })
    );

    let response = demo
        .http
        .post(demo.url("/v1/orders"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(response.json::<Value>().await?, json!({ "received": 1 }));
    Ok(())
}

#[tokio::test]
async fn max_calls_keeps_only_the_newest() -> anyhow::Result<()> {
    let mut settings = settings();
    settings.max_calls = 3;
    let demo = spawn(settings).await?;
    for index in 0..5 {
        demo.http
            .post(demo.url(&format!("/v1/orders/{index}")))
            .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
            .send()
            .await?;
    }
    let seqs: Vec<Value> = demo
        .recorded()
        .await?
        .iter()
        .map(|c| c["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(3), json!(4), json!(5)]);
    Ok(())
}

#[tokio::test]
async fn healthz_answers_ok() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let response = demo.http.get(demo.url("/_demo/healthz")).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "ok");
    assert!(
        demo.recorded().await?.is_empty(),
        "health probes are not partner calls"
    );
    Ok(())
}
