//! Renewal with refresh tokens: rotation, omitted refresh tokens, revoked consent, a failing
//! authorization server.

use std::time::Duration;

use futures::StreamExt as _;
use hookyard_testkit::wait_for;
use hookyard_token::Policy;
use tonic::Code;

use crate::stored::{Setup, connect, quick_policy};
use hookyard_testkit::oauth::{Refresh, browser, open};

/// Every token is due for renewal as soon as it is issued, and stays valid for an hour.
fn always_due() -> Policy {
    Policy {
        refresh_skew: Some(Duration::from_secs(3600)),
        ..quick_policy()
    }
}

#[tokio::test]
async fn rotated_refresh_token_is_stored_and_used_next_time() {
    let setup = Setup::start(3600, always_due()).await;
    assert_eq!(connect(&setup).await.0, 200);
    assert!(setup.server.refresh_valid("refresh-2"));

    let first = setup.service.get("crm").await.expect("token");
    assert_eq!(first.access_token, "access-3");
    assert!(!setup.server.refresh_valid("refresh-2"), "rotated away");
    assert!(setup.server.refresh_valid("refresh-3"));

    // Only the rotated token is accepted now: a second renewal proves it was stored.
    let second = setup.service.get("crm").await.expect("token");
    assert_eq!(second.access_token, "access-4");
    assert_eq!(setup.server.requests("refresh_token"), 2);
}

#[tokio::test]
async fn omitted_refresh_token_keeps_the_old_one() {
    let setup = Setup::start(3600, always_due()).await;
    assert_eq!(connect(&setup).await.0, 200);
    setup.server.set_refresh(Refresh::Omit);

    assert_eq!(
        setup.service.get("crm").await.expect("token").access_token,
        "access-3"
    );
    assert_eq!(
        setup.service.get("crm").await.expect("token").access_token,
        "access-4"
    );
    assert_eq!(setup.server.requests("refresh_token"), 2);
    assert!(setup.server.refresh_valid("refresh-2"));
}

#[tokio::test]
async fn invalid_grant_marks_the_connection_as_needing_consent_and_publishes_an_event() {
    let setup = Setup::start(3600, always_due()).await;
    let nats = setup.nats.client().await.expect("client");
    let mut events = nats
        .subscribe(setup.topology.token_needs_consent_subject())
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    assert_eq!(connect(&setup).await.0, 200);
    setup.server.set_refresh(Refresh::Revoked);

    let status = setup.service.get("crm").await.expect_err("revoked");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("event in time")
        .expect("event");
    let body: serde_json::Value = serde_json::from_slice(&event.payload).expect("json");
    assert_eq!(body["connection"], "crm");
    assert_eq!(body["reason"], "invalid_grant");

    // No further requests until a person consents again.
    let again = setup.service.get("crm").await.expect_err("needs consent");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(setup.server.requests("refresh_token"), 1);
    let page: url::Url = format!("{}/", setup.service.consent).parse().expect("url");
    let (_, page) = open(&browser(), &page).await;
    assert!(page.contains("data-state=\"needs-consent\""), "{page}");

    setup.server.set_refresh(Refresh::Rotate);
    assert_eq!(connect(&setup).await.0, 200);
    assert!(setup.service.get("crm").await.is_ok());
}

#[tokio::test]
async fn failing_authorization_server_keeps_the_old_tokens_and_is_retried_with_backoff() {
    // A backoff long enough that the second call below falls within it.
    let policy = Policy {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(2),
        ..always_due()
    };
    let setup = Setup::start(3600, policy).await;
    assert_eq!(connect(&setup).await.0, 200);
    setup.server.set_refresh(Refresh::Down);

    // Due but still valid: the old access token is served while renewal fails.
    let old = setup.service.get("crm").await.expect("old token");
    assert_eq!(old.access_token, "access-2");
    assert_eq!(setup.server.requests("refresh_token"), 1);
    // Within the backoff nobody asks again.
    assert_eq!(
        setup
            .service
            .get("crm")
            .await
            .expect("old token")
            .access_token,
        "access-2"
    );
    assert_eq!(setup.server.requests("refresh_token"), 1);

    // Once no valid access token remains, callers get UNAVAILABLE.
    assert!(setup.service.invalidate("crm", "access-2").await);
    let status = setup.service.get("crm").await.expect_err("no token");
    assert_eq!(status.code(), Code::Unavailable);

    setup.server.set_refresh(Refresh::Rotate);
    wait_for(
        Duration::from_secs(5),
        "renewal after the backoff",
        || async { setup.service.get("crm").await.is_ok() },
    )
    .await
    .expect("renewed");
    assert!(setup.server.requests("refresh_token") >= 2);
    // The refresh token kept through the outage is the one that renewed.
    assert!(!setup.server.refresh_valid("refresh-2"));
}

#[tokio::test]
async fn client_credentials_in_the_store_share_one_refused_request_per_wave() {
    use wiremock::{MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let refusal = ResponseTemplate::new(401)
        .set_body_json(serde_json::json!({ "error": "invalid_client" }))
        .set_delay(Duration::from_millis(200));
    crate::mount_token(&server, refusal, None).await;
    let (_nats, service) = client_credentials_in_a_store(&server).await;

    let results = futures::future::join_all((0..20).map(|_| service.get("erp"))).await;
    for result in results {
        assert_eq!(
            result.expect_err("refused").code(),
            Code::FailedPrecondition
        );
    }
    assert_eq!(crate::token_requests(&server).await, 1);
}

/// `invalid_grant` to a client-credentials request is a refusal, not a lost consent (a
/// client-credentials connection can never be given consent): once the authorization server
/// accepts the credentials again, the connection works, without a restart.
#[tokio::test]
async fn invalid_grant_for_client_credentials_clears_when_the_server_accepts_again() {
    use wiremock::{MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    // In mount order: one short-lived token, one refusal, then tokens again.
    crate::mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(crate::token_body("first", Some(1))),
        Some(1),
    )
    .await;
    crate::mount_token(
        &server,
        ResponseTemplate::new(400).set_body_json(serde_json::json!({ "error": "invalid_grant" })),
        Some(1),
    )
    .await;
    crate::mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(crate::token_body("again", Some(3600))),
        None,
    )
    .await;
    let (_nats, service) = client_credentials_in_a_store(&server).await;

    assert_eq!(
        service.get("erp").await.expect("first token").access_token,
        "first"
    );
    // The token is due for renewal at once; the server refuses one request, then issues again.
    hookyard_testkit::wait_for(Duration::from_secs(10), "a new token", || async {
        service
            .get("erp")
            .await
            .is_ok_and(|t| t.access_token == "again")
    })
    .await
    .expect("the connection recovered without a restart");
    assert_eq!(crate::token_requests(&server).await, 3);
}

/// A stored token service with one client-credentials connection, `erp`, at `server`; the
/// NATS server it uses lives as long as the first value.
async fn client_credentials_in_a_store(
    server: &wiremock::MockServer,
) -> (hookyard_testkit::Nats, crate::stored::Stored) {
    let nats = hookyard_testkit::Nats::start().await.expect("nats");
    let config = format!(
        r#"
[connections.erp]
base_url = "https://erp.example"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "oauth2_client_credentials", token_url = "{}/token", client_id = "hookyard", client_secret = "${{env:CRM_SECRET}}" }}
"#,
        server.uri()
    );
    let service = crate::stored::Stored::spawn(
        &nats,
        &crate::stored::topology(),
        crate::stored::Ports::bind().await,
        &config,
        &crate::stored::key(1, 1),
        quick_policy(),
    )
    .await;
    (nats, service)
}
