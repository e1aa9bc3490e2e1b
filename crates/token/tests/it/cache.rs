//! Caching, expiry, invalidation and single flight, counted at the authorization server.

use std::time::Duration;

use futures::future::join_all;
use tonic::Code;
use wiremock::{MockServer, ResponseTemplate};

use crate::{TokenService, authorization_server, config, mount_token, token_body, token_requests};

#[tokio::test]
async fn concurrent_callers_on_a_cold_cache_share_one_token_request() {
    // The delay keeps the first request open while the other callers arrive.
    let server = authorization_server("shared-token", Duration::from_millis(200)).await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let results = join_all((0..50).map(|_| service.get("erp"))).await;

    for result in &results {
        assert_eq!(result.as_ref().expect("token").access_token, "shared-token");
    }
    assert_eq!(token_requests(&server).await, 1);

    let again = service.get("erp").await.expect("token");
    assert_eq!(again.access_token, "shared-token");
    assert_eq!(token_requests(&server).await, 1, "served from cache");
}

#[tokio::test]
async fn concurrent_callers_share_a_failed_token_request() {
    let server = MockServer::start().await;
    let template = ResponseTemplate::new(503).set_delay(Duration::from_millis(200));
    mount_token(&server, template, None).await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let results = join_all((0..20).map(|_| service.get("erp"))).await;

    for result in results {
        assert_eq!(result.expect_err("failed").code(), Code::Unavailable);
    }
    assert_eq!(token_requests(&server).await, 1);

    // The failure is not cached for later callers.
    let _ = service.get("erp").await;
    assert_eq!(token_requests(&server).await, 2);
}

#[tokio::test]
async fn token_past_its_usable_lifetime_is_fetched_again() {
    let server = MockServer::start().await;
    // expires_in 0: stale as soon as it is issued (the skew logic is unit-tested in cache.rs).
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(token_body("short-lived", Some(0))),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    service.get("erp").await.expect("first");
    service.get("erp").await.expect("second");
    assert_eq!(token_requests(&server).await, 2);
}

#[tokio::test]
async fn token_without_expiry_is_cached_and_reports_unknown_expiry() {
    let server = MockServer::start().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(token_body("no-expiry", None)),
        None,
    )
    .await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    let token = service.get("erp").await.expect("token");
    assert_eq!(token.expires_at_ms, 0);
    service.get("erp").await.expect("cached");
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn invalidate_drops_only_the_token_it_names() {
    let server = MockServer::start().await;
    // wiremock matches mocks in mount order: the first answers once, then the second takes over.
    let first = ResponseTemplate::new(200).set_body_json(token_body("token-1", Some(3600)));
    let second = ResponseTemplate::new(200).set_body_json(token_body("token-2", Some(3600)));
    mount_token(&server, first, Some(1)).await;
    mount_token(&server, second, None).await;
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.uri()),
        "client_secret_basic",
    ))
    .await;

    assert_eq!(
        service.get("erp").await.expect("token").access_token,
        "token-1"
    );
    assert!(!service.invalidate("erp", "some-older-token").await);
    assert_eq!(
        service.get("erp").await.expect("token").access_token,
        "token-1"
    );
    assert_eq!(token_requests(&server).await, 1);

    assert!(service.invalidate("erp", "token-1").await);
    assert_eq!(
        service.get("erp").await.expect("token").access_token,
        "token-2"
    );
    assert_eq!(token_requests(&server).await, 2);

    // A late invalidation of the old token leaves the fresh one alone.
    assert!(!service.invalidate("erp", "token-1").await);
    assert_eq!(
        service.get("erp").await.expect("token").access_token,
        "token-2"
    );
    assert_eq!(token_requests(&server).await, 2);
}
