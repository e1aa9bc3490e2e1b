//! Calls without a response: their status codes, and that no secret is in the status.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::{
    QUERY_KEY, Services, Targets, call, closed_port, config, integration, partner_and_services,
    status_contains,
};

#[tokio::test]
async fn unknown_connection_is_not_found() {
    let (_partner, services) = partner_and_services().await;

    let status = services
        .call(call("nope", "GET", "/x"))
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn timeout_is_deadline_exceeded_without_the_query_key() {
    let (partner, services) = partner_and_services().await;
    // Longer than the connection's 200ms timeout.
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&partner)
        .await;

    let status = services
        .call(call("slow-query", "GET", "/x"))
        .await
        .expect_err("timeout");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(!status_contains(&status, QUERY_KEY), "{status:?}");
}

#[tokio::test]
async fn connection_refused_is_unavailable_without_the_query_key() {
    let (_partner, services) = partner_and_services().await;

    let status = services
        .call(call("down-query", "GET", "/x?page=1"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status_contains(&status, QUERY_KEY), "{status:?}");
}

#[tokio::test]
async fn response_body_above_the_limit_is_resource_exhausted() {
    let (partner, services) = partner_and_services().await;
    let body = vec![b'x'; hookyard_egress::MAX_RESPONSE_BODY_BYTES + 1];
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body))
        .mount(&partner)
        .await;

    let status = services
        .call(call("open", "GET", "/big"))
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn unreachable_token_service_is_unavailable() {
    let partner = MockServer::start().await;
    let integration = integration(&config(&Targets {
        partner: &partner.uri(),
        authorization_server: "http://127.0.0.1:9",
    }));
    let services = Services::spawn_egress(
        integration,
        Some(format!("http://127.0.0.1:{}", closed_port())),
        CancellationToken::new(),
    )
    .await;

    let status = services
        .call(call("erp", "GET", "/orders"))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        partner
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn oauth2_connection_without_token_endpoint_fails_at_start() {
    let integration = integration(&config(&Targets {
        partner: "http://127.0.0.1:9",
        authorization_server: "http://127.0.0.1:9",
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let settings = hookyard_egress::Settings {
        integration,
        token_endpoint: None,
        reload: None,
        audit: None,
    };

    let result = hookyard_egress::run(settings, listener, CancellationToken::new()).await;
    assert!(matches!(
        result,
        Err(hookyard_egress::Error::NoTokenEndpoint(_))
    ));
}

#[tokio::test]
async fn a_connections_own_response_limit_applies() {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 11]))
        .mount(&partner)
        .await;
    let services = crate::egress(&format!(
        "[connections.small]\nbase_url = \"{}\"\nallow_private = [\"127.0.0.0/8\"]\nmax_response_bytes = 10\n",
        partner.uri()
    ))
    .await;

    let status = services
        .call(call("small", "GET", "/x"))
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted);
}
