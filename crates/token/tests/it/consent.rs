//! The authorization code flow driven as a browser would, against the stand-in authorization
//! server, and each way it must be refused.

use tonic::Code;

use crate::stored::{Ports, Setup, Stored, connect, crm_config, key, quick_policy, topology};
use hookyard_testkit::oauth::{AuthServer, browser, click_connect, consent_at, open, param};

#[tokio::test]
async fn consent_flow_stores_tokens_and_get_token_serves_them() {
    let setup = Setup::start(3600, quick_policy()).await;
    let browser = browser();

    let (status, page) = open(
        &browser,
        &format!("{}/", setup.service.consent).parse().expect("url"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("data-state=\"needs-consent\""), "{page}");
    assert_eq!(
        setup
            .service
            .get("crm")
            .await
            .expect_err("no consent yet")
            .code(),
        Code::FailedPrecondition
    );

    let authorize = click_connect(&browser, &setup.service.consent, "crm").await;
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/authorize?", setup.server.url))
    );
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        param(&authorize, "code_challenge").map(|c| c.len()),
        Some(43)
    );
    assert_eq!(param(&authorize, "response_type").as_deref(), Some("code"));
    assert!(param(&authorize, "state").is_some_and(|s| s.len() >= 32));
    assert_eq!(param(&authorize, "scope").as_deref(), Some("contacts.read"));

    let callback = consent_at(&browser, &authorize).await;
    assert!(
        callback
            .as_str()
            .starts_with(&format!("{}/oauth/callback?", setup.service.consent))
    );
    let (status, page) = open(&browser, &callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("data-state=\"connected\""), "{page}");

    let token = setup.service.get("crm").await.expect("token");
    assert!(token.access_token.starts_with("access-"));
    assert_eq!(token.token_type, "Bearer");
    assert!(token.expires_at_ms > 0);
    let (_, page) = open(
        &browser,
        &format!("{}/", setup.service.consent).parse().expect("url"),
    )
    .await;
    assert!(page.contains("data-state=\"connected\""), "{page}");
    assert_eq!(setup.server.requests("authorization_code"), 1);
}

#[tokio::test]
async fn callback_with_unknown_state_is_refused() {
    let setup = Setup::start(3600, quick_policy()).await;
    let browser = browser();
    let authorize = click_connect(&browser, &setup.service.consent, "crm").await;
    let mut callback = consent_at(&browser, &authorize).await;
    let code = param(&callback, "code").expect("code");
    callback
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "forged-state");
    let (status, page) = open(&browser, &callback).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("class=\"error\""));
    assert_eq!(setup.server.requests("authorization_code"), 0);

    callback.set_query(Some("code=x"));
    assert_eq!(open(&browser, &callback).await.0, 400, "missing state");
    assert_eq!(
        setup
            .service
            .get("crm")
            .await
            .expect_err("not connected")
            .code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn replayed_callback_is_refused_and_the_first_tokens_stay() {
    let setup = Setup::start(3600, quick_policy()).await;
    let browser = browser();
    let authorize = click_connect(&browser, &setup.service.consent, "crm").await;
    let callback = consent_at(&browser, &authorize).await;
    assert_eq!(open(&browser, &callback).await.0, 200);
    let first = setup.service.get("crm").await.expect("token").access_token;

    let (status, page) = open(&browser, &callback).await;
    assert_eq!(status, 400, "{page}");
    // The state is one-time: the replay never reached the authorization server.
    assert_eq!(setup.server.requests("authorization_code"), 1);
    assert_eq!(
        setup.service.get("crm").await.expect("token").access_token,
        first
    );
}

#[tokio::test]
async fn code_redeemed_with_a_tampered_pkce_challenge_is_refused_by_the_server() {
    let setup = Setup::start(3600, quick_policy()).await;
    let browser = browser();
    let mut authorize = click_connect(&browser, &setup.service.consent, "crm").await;
    // An attacker swaps in their own challenge: our verifier no longer matches it.
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code_challenge" {
                "A".repeat(43)
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    authorize.query_pairs_mut().clear().extend_pairs(pairs);
    let callback = consent_at(&browser, &authorize).await;
    let (status, page) = open(&browser, &callback).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("invalid_grant"), "{page}");
    assert_eq!(setup.server.requests("authorization_code"), 1);
    assert_eq!(
        setup
            .service
            .get("crm")
            .await
            .expect_err("not connected")
            .code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn callback_from_another_issuer_is_refused() {
    let setup = Setup::start(3600, quick_policy()).await;
    setup.server.set_callback_iss(Some("https://evil.example"));
    let (status, page) = connect(&setup).await;
    assert_eq!(status, 400, "{page}");
    assert_eq!(setup.server.requests("authorization_code"), 0);

    // Without `iss` (a server that does not implement RFC 9207) the flow completes.
    setup.server.set_callback_iss(None);
    assert_eq!(connect(&setup).await.0, 200);
}

#[tokio::test]
async fn redirect_uri_differing_by_a_trailing_slash_is_refused() {
    let nats = hookyard_testkit::Nats::start().await.expect("nats");
    let ports = Ports::bind().await;
    let registered = ports.redirect_uri();
    let server = AuthServer::start(&registered, 3600).await;
    let config = crm_config(&server.url, &format!("{registered}/"));
    // A trailing slash is not the consent callback: the file is refused at start.
    let env = |_: &str| Some("x".to_owned());
    let problems = hookyard_core::Integration::parse(&config, &env).expect_err("refused");
    assert_eq!(
        problems.problems()[0].key,
        "connections.crm.auth.redirect_uri"
    );

    // Registered with a trailing slash at the server, without one here: the server refuses
    // to redirect, and a callback on the slashed path is not ours.
    let server = AuthServer::start(&format!("{registered}/"), 3600).await;
    let config = crm_config(&server.url, &registered);
    let service = Stored::spawn(
        &nats,
        &topology(),
        ports,
        &config,
        &key(1, 1),
        quick_policy(),
    )
    .await;
    let browser = browser();
    let authorize = click_connect(&browser, &service.consent, "crm").await;
    let response = browser.get(authorize).send().await.expect("authorize");
    assert_eq!(response.status(), 400);
    let slashed: url::Url = format!("{registered}/?code=c&state=s")
        .parse()
        .expect("url");
    assert_eq!(open(&browser, &slashed).await.0, 404);
    assert_eq!(server.requests("authorization_code"), 0);
}

#[tokio::test]
async fn refused_consent_and_unknown_connections_show_clear_pages() {
    let setup = Setup::start(3600, quick_policy()).await;
    let browser = browser();
    let authorize = click_connect(&browser, &setup.service.consent, "crm").await;
    let state = param(&authorize, "state").expect("state");
    let denied: url::Url = format!(
        "{}/oauth/callback?error=access_denied&state={state}",
        setup.service.consent
    )
    .parse()
    .expect("url");
    let (status, page) = open(&browser, &denied).await;
    assert_eq!(status, 400);
    assert!(page.contains("access_denied"), "{page}");

    let (status, page) = open(
        &browser,
        &format!("{}/connect/%3Cscript%3E", setup.service.consent)
            .parse()
            .expect("url"),
    )
    .await;
    assert_eq!(status, 404);
    assert!(!page.contains("<script>"), "escaped: {page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
}

#[tokio::test]
async fn authorization_code_without_a_token_store_fails_at_start() {
    let config = crm_config("https://as.example", "http://127.0.0.1:1/oauth/callback");
    let integration =
        hookyard_core::Integration::parse(&config, &|_| Some("x".to_owned())).expect("valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let settings = hookyard_token::Settings {
        integration: std::sync::Arc::new(integration),
        store: None,
        reload: None,
    };
    let error = hookyard_token::run(settings, listener, Default::default())
        .await
        .expect_err("needs the store");
    assert!(
        matches!(error, hookyard_token::Error::NeedsStore(ref c) if c == "crm"),
        "{error:?}"
    );
}
