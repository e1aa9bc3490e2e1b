use serde_json::{Value, json};

use crate::{CLIENT_ID, CLIENT_SECRET, settings, spawn};

#[tokio::test]
async fn client_secret_basic_issues_a_bearer_token() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let response = demo
        .http
        .post(demo.url("/oauth2/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "orders:write"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await?;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "orders:write");
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|token| token.len() >= 32)
    );
    Ok(())
}

#[tokio::test]
async fn client_secret_post_issues_a_bearer_token() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let response = demo
        .http
        .post(demo.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].is_string());
    assert!(
        body.get("scope").is_none(),
        "no scope requested, none echoed"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_or_missing_secret_is_invalid_client() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let requests = [
        demo.http
            .post(demo.url("/oauth2/token"))
            .basic_auth(CLIENT_ID, Some("wrong"))
            .form(&[("grant_type", "client_credentials")]),
        demo.http.post(demo.url("/oauth2/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
        ]),
        demo.http
            .post(demo.url("/oauth2/token"))
            .form(&[("grant_type", "client_credentials")]),
    ];
    for request in requests {
        let response = request.send().await?;
        assert_eq!(response.status(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()?
                .starts_with("Basic")
        );
        let body: Value = response.json().await?;
        assert_eq!(body, json!({ "error": "invalid_client" }));
    }
    assert_eq!(demo.calls("").await?["token_requests"], 3);
    Ok(())
}

#[tokio::test]
async fn other_grant_types_are_unsupported() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let response = demo
        .http
        .post(demo.url("/oauth2/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "u"),
            ("password", "p"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body, json!({ "error": "unsupported_grant_type" }));
    Ok(())
}

#[tokio::test]
async fn malformed_form_is_invalid_request() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let response = demo
        .http
        .post(demo.url("/oauth2/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=%zz")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body, json!({ "error": "invalid_request" }));
    Ok(())
}
