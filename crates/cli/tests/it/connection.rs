//! `hookyard connection test` against an in-process egress and a loopback partner.

use std::{collections::BTreeMap, net::SocketAddr, process::Output, sync::Arc};

use hookyard_core::Integration;
use tokio_util::sync::CancellationToken;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const API_KEY: &str = "api-key-SECRET-cli";
const COOKIE: &str = "cookie-SECRET-cli";

fn config(partner: &str) -> String {
    format!(
        r#"
[connections.erp]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "header", headers = {{ "X-Api-Key" = "${{env:CLI_TEST_KEY}}" }} }}
"#
    )
}

/// Egress on a loopback port serving `text`; stops when the token is dropped.
async fn egress(text: &str) -> (SocketAddr, tokio_util::sync::DropGuard) {
    let env: BTreeMap<&str, &str> = [("CLI_TEST_KEY", API_KEY)].into();
    let integration = Integration::parse(text, &|name| env.get(name).map(|v| v.to_string()))
        .expect("valid integration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let settings = hookyard_egress::Settings {
        integration: Arc::new(integration),
        token_endpoint: None,
        reload: None,
        audit: None,
    };
    tokio::spawn(hookyard_egress::run(settings, listener, shutdown.clone()));
    (address, shutdown.drop_guard())
}

/// Runs `hookyard connection test <args>` with the config file `text`.
async fn hookyard(text: &str, egress: SocketAddr, args: &[&str]) -> (Output, String) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["connection", "test"])
        .args(args)
        .arg("--config")
        .arg(file.path())
        .arg("--egress")
        .arg(format!("http://{egress}"))
        .env_clear()
        .output()
        .await
        .expect("runs hookyard");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output, text)
}

#[tokio::test]
async fn prints_status_headers_and_body_through_the_real_connection_without_secrets() {
    let partner = MockServer::start().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/status"))
        .and(matchers::header("x-api-key", API_KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-partner", "p-1")
                .insert_header("set-cookie", format!("session={COOKIE}").as_str())
                .set_body_string("all good"),
        )
        .mount(&partner)
        .await;
    let text = config(&partner.uri());
    let (address, _egress) = egress(&text).await;

    let (output, printed) = hookyard(&text, address, &["erp", "GET", "/status"]).await;
    assert!(output.status.success(), "{printed}");
    for expected in [
        "HTTP 200",
        "x-partner: p-1",
        "all good",
        "set-cookie: REDACTED",
    ] {
        assert!(printed.contains(expected), "{expected} not in: {printed}");
    }
    for secret in [API_KEY, COOKIE] {
        assert!(!printed.contains(secret), "{secret} in: {printed}");
    }
    assert_eq!(
        partner.received_requests().await.unwrap_or_default().len(),
        1
    );
}

#[tokio::test]
async fn an_error_status_or_no_answer_exits_non_zero() {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(404))
        .mount(&partner)
        .await;
    let text = config(&partner.uri());
    let (address, _egress) = egress(&text).await;
    let (output, printed) = hookyard(&text, address, &["erp"]).await;
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("HTTP 404"), "{printed}");
    let requests = partner.received_requests().await.unwrap_or_default();
    assert_eq!(requests[0].method.as_str(), "GET");
    assert_eq!(requests[0].url.path(), "/");

    // The same connection without the loopback allowance: refused by egress's SSRF guard.
    let refused = text.replace("allow_private = [\"127.0.0.0/8\"]\n", "");
    let (address, _egress) = egress(&refused).await;
    let (output, printed) = hookyard(&refused, address, &["erp"]).await;
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("PermissionDenied"), "{printed}");
}

#[tokio::test]
async fn an_unknown_connection_is_a_config_error() {
    let text = config("http://127.0.0.1:9");
    let (address, _egress) = egress(&text).await;
    let (output, printed) = hookyard(&text, address, &["nope"]).await;
    assert_eq!(output.status.code(), Some(64), "{printed}");
}
