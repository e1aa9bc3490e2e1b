//! The client credentials grant as the authorization server sees it, and its failures.

use base64::Engine as _;
use tonic::Code;
use wiremock::{MockServer, ResponseTemplate};

use crate::{CLIENT_SECRET, TokenService, config, mount_token, token_body};

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn client_secret_basic_sends_credentials_in_the_authorization_header() {
    let server = MockServer::start().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(token_body("t-basic", Some(3600))),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let token = service.get("erp").await.expect("token");
    assert_eq!(token.access_token, "t-basic");
    assert_eq!(token.token_type, "Bearer");
    assert!(token.expires_at_ms > 0);

    let requests = server.received_requests().await.expect("recorded");
    let request = &requests[0];
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("hookyard:{CLIENT_SECRET}"));
    assert_eq!(
        request.headers.get("authorization").expect("authorization"),
        &format!("Basic {expected}")
    );
    let form = form(&request.body);
    assert_eq!(field(&form, "grant_type"), Some("client_credentials"));
    assert_eq!(field(&form, "scope"), Some("orders.read orders.write"));
    assert_eq!(field(&form, "client_secret"), None);
}

#[tokio::test]
async fn client_secret_post_sends_credentials_in_the_form() {
    let server = MockServer::start().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(token_body("t-post", Some(3600))),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_post",
    ))
    .await;

    assert_eq!(
        service.get("erp").await.expect("token").access_token,
        "t-post"
    );

    let requests = server.received_requests().await.expect("recorded");
    let request = &requests[0];
    assert!(request.headers.get("authorization").is_none());
    let form = form(&request.body);
    assert_eq!(field(&form, "grant_type"), Some("client_credentials"));
    assert_eq!(field(&form, "client_id"), Some("hookyard"));
    assert_eq!(field(&form, "client_secret"), Some(CLIENT_SECRET));
    assert_eq!(field(&form, "scope"), Some("orders.read orders.write"));
}

#[tokio::test]
async fn refused_client_credentials_are_failed_precondition_without_secrets() {
    let server = MockServer::start().await;
    // Some servers echo what they received in the description: it must not be passed on.
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": format!("bad secret {CLIENT_SECRET}"),
    });
    mount_token(
        &server,
        ResponseTemplate::new(401).set_body_json(body),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_post",
    ))
    .await;

    let status = service.get("erp").await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("invalid_client"), "{status:?}");
    assert!(!status.message().contains(CLIENT_SECRET), "{status:?}");
    assert!(!status.message().contains("bad secret"), "{status:?}");
}

#[tokio::test]
async fn invalid_scope_is_failed_precondition() {
    let server = MockServer::start().await;
    let body = serde_json::json!({ "error": "invalid_scope" });
    mount_token(
        &server,
        ResponseTemplate::new(400).set_body_json(body),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let status = service.get("erp").await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn client_error_without_oauth_error_is_failed_precondition() {
    let server = MockServer::start().await;
    mount_token(
        &server,
        ResponseTemplate::new(404).set_body_string("<html>not here</html>"),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let status = service.get("erp").await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn server_error_is_unavailable() {
    let server = MockServer::start().await;
    let body = serde_json::json!({ "error": "server_error" });
    mount_token(
        &server,
        ResponseTemplate::new(500).set_body_json(body),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let status = service.get("erp").await.expect_err("server error");
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn malformed_token_response_is_unavailable_and_not_quoted() {
    let server = MockServer::start().await;
    mount_token(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({ "access_token": "leaky-token" })),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let status = service.get("erp").await.expect_err("malformed");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains("leaky-token"), "{status:?}");
}

#[tokio::test]
async fn unreachable_authorization_server_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let service = TokenService::spawn(&config(
        &format!("http://127.0.0.1:{port}/token"),
        "client_secret_basic",
    ))
    .await;

    let status = service.get("erp").await.expect_err("unreachable");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains(CLIENT_SECRET), "{status:?}");
}

#[tokio::test]
async fn unknown_and_non_oauth_connections_are_not_found() {
    let service =
        TokenService::spawn(&config("https://as.example/token", "client_secret_basic")).await;

    for connection in ["nope", "plain", ""] {
        let status = service.get(connection).await.expect_err("not found");
        assert_eq!(status.code(), Code::NotFound, "{connection}");
    }
    let status = service
        .client
        .clone()
        .invalidate_token(hookyard_proto::token::v1::InvalidateTokenRequest {
            connection: "nope".to_owned(),
            access_token: "x".to_owned(),
        })
        .await
        .expect_err("not found");
    assert_eq!(status.code(), Code::NotFound);
}
