//! An `oauth2_authorization_code` connection that nobody has consented to yet: its events wait
//! — without spending the handler's retries — and are delivered once a person gives consent on
//! the token service's page. Nothing is lost and nothing is dead-lettered.

use hookyard_testkit::oauth::{AuthServer, browser, click_connect, consent_at, open};
use serde_json::json;
use tokio::net::TcpListener;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

const EVENTS: usize = 5;
const WAITS: &str = "hookyard_worker_deliveries_total{handler=\"contacts\",outcome=\"wait\"} ";

#[tokio::test]
async fn events_awaiting_consent_wait_and_are_delivered_once_it_is_given() -> anyhow::Result<()> {
    let consent = TcpListener::bind("127.0.0.1:0").await?;
    let page = format!("http://{}", consent.local_addr()?);
    let authorization = AuthServer::start(&format!("{page}/oauth/callback"), 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/contacts"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let erp_auth = auth_server("tok", 3600).await;
    let handler = format!(
        r#"
[[routes]]
event = "contact.created"
handlers = ["contacts"]

[handlers.contacts]
max_deliver = 2
backoff = ["200ms"]

[[handlers.contacts.steps]]
type = "http"
connection = "crm"
path = "/v1/contacts"

[connections.crm]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "oauth2_authorization_code", authorize_url = "{server}/authorize", token_url = "{server}/token", client_id = "hookyard", client_secret = "${{env:CRM_SECRET}}", scopes = ["contacts.write"], redirect_uri = "{page}/oauth/callback", issuer = "{server}" }}
"#,
        partner = partner.uri(),
        server = authorization.url,
    );
    let config = shop_config(&partner.uri(), &erp_auth.uri(), &handler);
    let stack = Stack::start_consenting(&config, consent).await?;

    for n in 0..EVENTS {
        let body = json!({"contact": {"id": format!("c-{n}")}});
        stack
            .accepted("contact.created", &format!("consent-{n}"), &body)
            .await?;
    }
    // Every event had a delivery that found no consent, and waited.
    hookyard_testkit::wait_for(PATIENCE, "each event to wait for consent", || async {
        stack.metric(&stack.worker, WAITS).await.unwrap_or(0) >= EVENTS as u64
    })
    .await?;
    assert!(requests_to(&partner, "/v1/contacts").await.is_empty());
    assert!(stack.dead_letters("contacts").await?.is_empty());
    assert_eq!(consent_state(&stack, "crm").await?, "needs_consent");

    let browser = browser();
    let authorize = click_connect(&browser, &page, "crm").await;
    let callback = consent_at(&browser, &authorize).await;
    assert_eq!(open(&browser, &callback).await.0, 200, "consent given");

    wait_requests(&partner, "/v1/contacts", EVENTS).await?;
    hookyard_testkit::wait_for(PATIENCE, "contacts idle", || stack.handler_idle("contacts"))
        .await?;
    let calls = requests_to(&partner, "/v1/contacts").await;
    let keys = counts(calls.iter().filter_map(|c| header(c, "idempotency-key")));
    assert_eq!(keys.len(), EVENTS, "every event delivered: {keys:?}");
    assert!(
        calls
            .iter()
            .all(|c| header(c, "authorization").is_some_and(|a| a.starts_with("Bearer "))),
        "with the consented token"
    );
    assert!(stack.dead_letters("contacts").await?.is_empty(), "lost 0");
    assert_eq!(consent_state(&stack, "crm").await?, "connected");
    // A connection without consent to give is not asked about.
    let refused = consent_state(&stack, "erp")
        .await
        .expect_err("not authorization code");
    assert!(format!("{refused:#}").contains("NotFound"), "{refused:#}");
    stack.stop().await;
    Ok(())
}

/// The consent state the token service gives the console for `connection`.
async fn consent_state(stack: &Stack, connection: &str) -> anyhow::Result<String> {
    use hookyard_proto::token::v1::{
        GetConsentStateRequest, token_service_client::TokenServiceClient,
    };
    let mut client = TokenServiceClient::connect(stack.token.clone()).await?;
    let answer = client
        .get_consent_state(GetConsentStateRequest {
            connection: connection.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
    Ok(answer.into_inner().state)
}
