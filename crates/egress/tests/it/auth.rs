//! Each kind of connection auth as the partner receives it, and that callers cannot override it.

use base64::Engine as _;
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::{
    BASIC_PASSWORD, HEADER_KEY, QUERY_KEY, Services, Targets, call, config, header,
    partner_and_services, received,
};

#[tokio::test]
async fn basic_auth_reaches_the_partner_and_the_path_is_appended_to_the_base_path() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    let mut request = call("basic", "GET", "/orders?status=open");
    request.headers = vec![header("Authorization", "Basic forged")];
    let response = services.call(request).await.expect("call");
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 1);

    let requests = received(&partner).await;
    let got = &requests[0];
    assert_eq!(got.url.path(), "/api/orders");
    assert_eq!(got.url.query(), Some("status=open"));
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("hookyard:{BASIC_PASSWORD}"));
    let values: Vec<_> = got.headers.get_all("authorization").iter().collect();
    assert_eq!(values, [&format!("Basic {expected}")]);
}

#[tokio::test]
async fn header_auth_reaches_the_partner_and_caller_copies_are_dropped() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    let mut request = call("header", "GET", "/rates");
    request.headers = vec![
        header("x-api-key", "forged"),
        header("Authorization", "Bearer forged"),
        header("X-Trace", "t-1"),
    ];
    services.call(request).await.expect("call");

    let requests = received(&partner).await;
    let got = &requests[0];
    let keys: Vec<_> = got.headers.get_all("x-api-key").iter().collect();
    assert_eq!(keys, [HEADER_KEY]);
    assert!(got.headers.get("authorization").is_none());
    assert_eq!(got.headers.get("x-trace").expect("kept"), "t-1");
}

#[tokio::test]
async fn query_auth_is_appended_to_the_callers_query() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    services
        .call(call("query", "GET", "/items?page=2"))
        .await
        .expect("call");

    let requests = received(&partner).await;
    let pairs: Vec<(String, String)> = requests[0].url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("page".to_owned(), "2".to_owned()),
            ("api_key".to_owned(), QUERY_KEY.to_owned())
        ]
    );
}

#[tokio::test]
async fn caller_cannot_set_the_query_auth_parameter() {
    let (partner, services) = partner_and_services().await;

    let status = services
        .call(call("query", "GET", "/items?api_key=forged"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(received(&partner).await.is_empty());
}

async fn oauth_setup(tokens: &[&str]) -> (MockServer, MockServer, Services) {
    let partner = MockServer::start().await;
    let authorization_server = MockServer::start().await;
    // Mocks match in mount order: each token is issued once, the last one from then on.
    for (i, token) in tokens.iter().enumerate() {
        let body = serde_json::json!({
            "access_token": token, "token_type": "Bearer", "expires_in": 3600,
        });
        let mock = Mock::given(matchers::method("POST"))
            .and(matchers::path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body));
        if i + 1 < tokens.len() {
            mock.up_to_n_times(1).mount(&authorization_server).await;
        } else {
            mock.mount(&authorization_server).await;
        }
    }
    let services = Services::spawn(&config(&Targets {
        partner: &partner.uri(),
        authorization_server: &authorization_server.uri(),
    }))
    .await;
    (partner, authorization_server, services)
}

#[tokio::test]
async fn oauth2_connection_sends_the_token_services_bearer_token() {
    let (partner, authorization_server, services) = oauth_setup(&["token-1"]).await;
    Mock::given(matchers::bearer_token("token-1"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    for _ in 0..2 {
        let response = services
            .call(call("erp", "GET", "/orders"))
            .await
            .expect("call");
        assert_eq!(response.status, 200);
        assert_eq!(response.attempts, 1);
    }
    // Egress asks the token service every time; the token service asked the server once.
    assert_eq!(received(&authorization_server).await.len(), 1);
}

#[tokio::test]
async fn partner_401_invalidates_the_token_and_retries_once_with_a_fresh_one() {
    let (partner, authorization_server, services) = oauth_setup(&["token-1", "token-2"]).await;
    Mock::given(matchers::bearer_token("token-1"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&partner)
        .await;
    Mock::given(matchers::bearer_token("token-2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    let response = services
        .call(call("erp", "POST", "/orders"))
        .await
        .expect("call");
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 2);
    assert_eq!(received(&authorization_server).await.len(), 2);
    let bearers: Vec<_> = received(&partner)
        .await
        .iter()
        .map(|r| r.headers.get("authorization").expect("auth").clone())
        .collect();
    assert_eq!(bearers, ["Bearer token-1", "Bearer token-2"]);
}

#[tokio::test]
async fn a_second_401_is_returned_without_further_retries() {
    let (partner, _authorization_server, services) = oauth_setup(&["token-1", "token-2"]).await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(401))
        .mount(&partner)
        .await;

    let response = services
        .call(call("erp", "GET", "/orders"))
        .await
        .expect("call");
    assert_eq!(response.status, 401);
    assert_eq!(response.attempts, 2);
    assert_eq!(received(&partner).await.len(), 2);
}

#[tokio::test]
async fn refused_client_credentials_fail_the_call_with_failed_precondition() {
    let partner = MockServer::start().await;
    let authorization_server = MockServer::start().await;
    Mock::given(matchers::path("/token"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({ "error": "invalid_client" })),
        )
        .mount(&authorization_server)
        .await;
    let services = Services::spawn(&config(&Targets {
        partner: &partner.uri(),
        authorization_server: &authorization_server.uri(),
    }))
    .await;

    let status = services
        .call(call("erp", "GET", "/orders"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(received(&partner).await.is_empty());
}
