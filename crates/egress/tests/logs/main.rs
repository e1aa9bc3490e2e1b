//! Egress's logs (and the in-process token service's): every log line,
//! at TRACE and from every crate, written while calls with distinctive secrets succeed, fail,
//! time out and retry, holds none of the secrets or tokens. This binary holds this one test,
//! so the global subscriber it installs sees everything the process logs.

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{Arc, Mutex},
};

use hookyard_core::Integration;
use hookyard_proto::egress::v1::{
    CallRequest, CallResponse, egress_service_client::EgressServiceClient,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const BASIC_PASSWORD: &str = "basic-pass-SECRET";
const HEADER_KEY: &str = "header-key-SECRET";
const QUERY_KEY: &str = "query-key-SECRET";
const CLIENT_SECRET: &str = "client-secret-SECRET";
const ACCESS_TOKEN: &str = "access-token-SECRET";
const FRESH_TOKEN: &str = "fresh-token-SECRET";

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn config(partner: &str, authorization_server: &str) -> String {
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let query = r#"auth = { type = "query", name = "api_key", value = "${env:QUERY_KEY}" }"#;
    format!(
        r#"
[connections.open]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]

[connections.basic]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "basic", username = "hookyard", password = "${{env:BASIC_PASSWORD}}" }}

[connections.header]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "header", headers = {{ "X-Api-Key" = "${{env:HEADER_KEY}}" }} }}

[connections.query]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
{query}

[connections.erp]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "oauth2_client_credentials", token_url = "{authorization_server}/token", client_id = "hookyard", client_secret = "${{env:CLIENT_SECRET}}" }}

[connections.slow-query]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
timeout = "200ms"
{query}

[connections.down-query]
base_url = "http://127.0.0.1:{down}"
allow_private = ["127.0.0.0/8"]
{query}
"#
    )
}

/// The token service and egress on loopback ports, stopped when the token drops.
async fn services(
    text: &str,
) -> (
    EgressServiceClient<tonic::transport::Channel>,
    tokio_util::sync::DropGuard,
) {
    let env: BTreeMap<&str, &str> = [
        ("BASIC_PASSWORD", BASIC_PASSWORD),
        ("HEADER_KEY", HEADER_KEY),
        ("QUERY_KEY", QUERY_KEY),
        ("CLIENT_SECRET", CLIENT_SECRET),
    ]
    .into();
    let integration = Arc::new(
        Integration::parse(text, &|name| env.get(name).map(|v| v.to_string()))
            .expect("valid integration"),
    );
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let token_endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let settings = hookyard_token::Settings {
        integration: integration.clone(),
        store: None,
        reload: None,
    };
    tokio::spawn(hookyard_token::run(settings, listener, shutdown.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let settings = hookyard_egress::Settings {
        integration,
        token_endpoint: Some(token_endpoint),
        reload: None,
        audit: None,
    };
    tokio::spawn(hookyard_egress::run(settings, listener, shutdown.clone()));
    let client = EgressServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    (client, shutdown.drop_guard())
}

fn call(connection: &str, method: &str, path: &str) -> CallRequest {
    CallRequest {
        connection: connection.to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        ..CallRequest::default()
    }
}

#[tokio::test]
async fn no_secret_or_token_appears_in_the_logs() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(buffer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let partner = MockServer::start().await;
    let authorization_server = MockServer::start().await;
    for (token, times) in [(ACCESS_TOKEN, Some(1)), (FRESH_TOKEN, None)] {
        let body = serde_json::json!({
            "access_token": token, "token_type": "Bearer", "expires_in": 3600,
        });
        let mock = Mock::given(matchers::path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body));
        match times {
            Some(n) => mock.up_to_n_times(n).mount(&authorization_server).await,
            None => mock.mount(&authorization_server).await,
        }
    }
    // The first token is refused (a 401, then a retry with the fresh one); the rest answer
    // 503 once (retried), then 200, and /slow never in time.
    Mock::given(matchers::bearer_token(ACCESS_TOKEN))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(1)
        .mount(&partner)
        .await;
    Mock::given(matchers::path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(3)))
        .with_priority(1)
        .mount(&partner)
        .await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&partner)
        .await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .with_priority(3)
        .mount(&partner)
        .await;
    let (egress, _services) = services(&config(&partner.uri(), &authorization_server.uri())).await;
    let send = |request: CallRequest| {
        let mut egress = egress.clone();
        async move { egress.call(request).await.map(tonic::Response::into_inner) }
    };

    let erp: CallResponse = send(call("erp", "GET", "/orders")).await.expect("erp");
    assert_eq!(erp.status, 200);
    for connection in ["basic", "header", "query", "open"] {
        let mut request = call(connection, "PUT", "/orders?page=1");
        request.idempotency_key = "evt-1:orders".to_owned();
        send(request).await.expect(connection);
    }
    send(call("slow-query", "GET", "/slow"))
        .await
        .expect_err("timeout");
    send(call("down-query", "GET", "/down"))
        .await
        .expect_err("down");

    let logs = buffer.text();
    assert!(logs.contains("partner call made"), "logs were captured");
    for secret in [
        BASIC_PASSWORD,
        HEADER_KEY,
        QUERY_KEY,
        CLIENT_SECRET,
        ACCESS_TOKEN,
        FRESH_TOKEN,
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}
