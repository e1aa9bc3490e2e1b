//! The admin API refuses calls without the token or with a wrong one (UNAUTHENTICATED on gRPC,
//! 401 on JSON), refuses hostile input with a clear 4xx, and no answer holds a credential that
//! came in a webhook's headers or query, or a connection's secret.

use hookyard_proto::admin::v1::{
    GetEventRequest, ListEventsRequest, PurgeDeadLettersRequest, ReplayRequest,
    admin_service_client::AdminServiceClient,
};
use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use super::{admin, hookyard};
use crate::harness::*;

const COOKIE: &str = "cookie-SECRET-e2e-1";
const HEADER_TOKEN: &str = "header-SECRET-e2e-2";
const SIGNATURE: &str = "sig-SECRET-e2e-3";
const QUERY_TOKEN: &str = "query-SECRET-e2e-4";

/// orders fails at once (a 400 is permanent), so the event is also in the dead letters.
const ORDERS: &str = r#"
[[routes]]
event = "order.*"
handlers = ["orders"]

[handlers.orders]
max_deliver = 1

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/orders?api_key=x"
"#;

#[tokio::test]
async fn calls_without_the_right_token_are_refused() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;

    let channel = tonic::transport::Endpoint::from_shared(stack.admin.clone())?
        .connect()
        .await?;
    let mut anonymous = AdminServiceClient::new(channel.clone());
    let refused = anonymous
        .list_events(ListEventsRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut wrong = AdminServiceClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
        r.metadata_mut().insert(
            "authorization",
            "Bearer not-the-token-at-all".parse().expect("value"),
        );
        Ok(r)
    });
    let refused = wrong
        .get_event(GetEventRequest { id: "evt_x".into() })
        .await
        .expect_err("wrong token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let url = format!("{}/v1/events", stack.admin);
    let http = stack.http();
    assert_eq!(http.get(&url).send().await?.status(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_eq!(
        http.get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .status(),
        200
    );

    let mut cli = super::command(&stack);
    let run = cli
        .env("HOOKYARD_ADMIN_TOKEN", "not-the-token-at-all")
        .args(["events", "ls"])
        .output()
        .await?;
    assert_eq!(
        run.status.code(),
        Some(4),
        "the CLI's exit code for a refusal"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_a_clear_4xx() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;
    let http = stack.http();
    let base = &stack.admin;
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    for (path, status) in [
        ("/v1/events?page_token=nope".to_owned(), 400),
        ("/v1/events?unknown=1".to_owned(), 400),
        ("/v1/events?since_ms=10&until_ms=5".to_owned(), 400),
        ("/v1/events?page_size=-1".to_owned(), 400),
        (format!("/v1/events/{}", "x".repeat(5000)), 400),
        ("/v1/events/evt_0000".to_owned(), 404),
        ("/v1/events/%FF%FE".to_owned(), 400),
        ("/v1/dead-letters/abc".to_owned(), 400),
        ("/v1/dead-letters/99999".to_owned(), 404),
        ("/v1/dead-letters?unknown=1".to_owned(), 400),
        ("/v1/dead-letters?page_size=x".to_owned(), 400),
        (
            "/v1/dead-letters?handler=orders&page_size=5".to_owned(),
            200,
        ),
        ("/v1/audit?page_token=zz".to_owned(), 400),
        ("/v1/replays?page_size=2".to_owned(), 200),
    ] {
        assert_eq!(get(path.clone()).await?.status(), status, "{path}");
    }
    let post = |path: &str, body: &'static [u8]| {
        http.post(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .body(body)
            .send()
    };
    let nested = Box::leak("[".repeat(10_000).into_boxed_str()).as_bytes();
    for (path, body) in [
        ("/v1/replays", &b"{"[..]),
        ("/v1/replays", b"{}"),
        ("/v1/replays", b"{\"nope\": 1}"),
        ("/v1/replays", nested),
        ("/v1/replays", b"\xff\xfe"),
        ("/v1/dead-letters/purge", b"{}"),
        ("/v1/handlers/nope/pause", b""),
    ] {
        let status = post(path, body).await?.status();
        assert!(status == 400 || status == 404, "{path} {status}");
    }
    let mut client = admin(&stack).await?;
    let empty = client
        .purge_dead_letters(PurgeDeadLettersRequest::default())
        .await;
    assert_eq!(
        empty.expect_err("selects nothing").code(),
        tonic::Code::InvalidArgument
    );
    let replay = client.replay(ReplayRequest::default()).await;
    assert_eq!(
        replay.expect_err("no selection").code(),
        tonic::Code::InvalidArgument
    );
    let long = client
        .get_event(GetEventRequest {
            id: "e".repeat(100_000),
        })
        .await;
    assert_eq!(
        long.expect_err("too long").code(),
        tonic::Code::InvalidArgument
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn no_admin_answer_holds_a_credential() -> anyhow::Result<()> {
    let auth = auth_server("oauth-token-SECRET-e2e", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(400))
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;
    let response = stack
        .http()
        .post(format!(
            "{}/hooks/shop?access_token={QUERY_TOKEN}&page=1",
            stack.ingress
        ))
        .basic_auth(SHOP_USER, Some(SHOP_PASSWORD))
        .header("X-Shop-Topic", "order.created")
        .header("X-Shop-Delivery-Id", "secret-1")
        .header("Cookie", format!("session={COOKIE}"))
        .header("X-Api-Token", HEADER_TOKEN)
        .header("Stripe-Signature", format!("t=1,v1={SIGNATURE}"))
        .json(&json!({"order": {"id": "o-s"}}))
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    let id = response.json::<serde_json::Value>().await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    hookyard_testkit::wait_for(PATIENCE, "the dead letter", || async {
        stack
            .dead_letters("orders")
            .await
            .map(|d| d.len())
            .unwrap_or(0)
            == 1
    })
    .await?;
    hookyard_testkit::wait_for(PATIENCE, "the audit record", || async {
        let run = hookyard(&stack, &["audit", "--event", &id, "--json"]).await;
        run.is_ok_and(|r| r.stdout.contains("REDACTED"))
    })
    .await?;

    let mut answers = String::new();
    for path in [
        "/v1/events".to_owned(),
        format!("/v1/events/{id}"),
        "/v1/dead-letters".to_owned(),
        "/v1/dead-letters/1".to_owned(),
        format!("/v1/audit?event_id={id}"),
        "/v1/handlers".to_owned(),
        "/v1/replays".to_owned(),
    ] {
        let answer = stack
            .http()
            .get(format!("{}{path}", stack.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        assert_eq!(answer.status(), 200, "{path}");
        answers.push_str(&answer.text().await?);
    }
    for args in [
        vec!["events", "show", id.as_str()],
        vec!["events", "ls"],
        vec!["dlq", "ls"],
        vec!["dlq", "show", "1"],
        vec!["audit", "--event", id.as_str()],
    ] {
        answers.push_str(&hookyard(&stack, &args).await?.stdout);
    }
    assert!(answers.contains("REDACTED"), "redacted values are marked");
    assert!(answers.contains(&id), "the answers are about the event");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{SHOP_USER}:{SHOP_PASSWORD}"),
    );
    for secret in [
        COOKIE,
        HEADER_TOKEN,
        SIGNATURE,
        QUERY_TOKEN,
        SHOP_PASSWORD,
        &basic,
        ERP_CLIENT_SECRET,
        "oauth-token-SECRET-e2e",
        "api_key=x",
    ] {
        assert!(!answers.contains(secret), "{secret} in an admin answer");
    }
    stack.stop().await;
    Ok(())
}
