//! Integration tests of the token service: the real service on a loopback port, called over
//! gRPC with the generated client, against wiremock (client credentials) or a stand-in
//! authorization server (`hookyard_testkit::oauth`: authorization code, refresh) and a real NATS for the
//! token store (`stored`).

mod assertion;
mod cache;
mod consent;
mod encryption;
mod grant;
mod outbound;
mod refresh;
mod reload;
mod replicas;
mod startup;
mod stored;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use hookyard_core::Integration;
use hookyard_proto::token::v1::{
    GetTokenRequest, GetTokenResponse, InvalidateTokenRequest,
    token_service_client::TokenServiceClient,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

pub const CLIENT_SECRET: &str = "erp-client-secret-4711";

/// A token service running in-process; stops when dropped.
pub struct TokenService {
    pub client: TokenServiceClient<Channel>,
    shutdown: CancellationToken,
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TokenService {
    pub async fn spawn(config: &str) -> Self {
        let env: BTreeMap<&str, &str> = [("ERP_SECRET", CLIENT_SECRET), ("KEY", "k")].into();
        let integration = Integration::parse(config, &|name| env.get(name).map(|v| v.to_string()))
            .expect("valid integration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let settings = hookyard_token::Settings {
            integration: Arc::new(integration),
            store: None,
            reload: None,
        };
        tokio::spawn(hookyard_token::run(settings, listener, shutdown.clone()));
        let client = TokenServiceClient::connect(format!("http://{address}"))
            .await
            .expect("connect");
        Self { client, shutdown }
    }

    pub async fn get(&self, connection: &str) -> Result<GetTokenResponse, tonic::Status> {
        self.client
            .clone()
            .get_token(GetTokenRequest {
                connection: connection.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn invalidate(&self, connection: &str, access_token: &str) -> bool {
        self.client
            .clone()
            .invalidate_token(InvalidateTokenRequest {
                connection: connection.to_owned(),
                access_token: access_token.to_owned(),
            })
            .await
            .expect("invalidate")
            .into_inner()
            .invalidated
    }
}

/// An integration file with connection `erp` using the client credentials grant at `token_url`,
/// and connection `plain` without auth.
pub fn config(token_url: &str, client_auth: &str) -> String {
    format!(
        r#"
[connections.erp]
base_url = "https://erp.example"
# The stand-in authorization server is on loopback, which the SSRF guard refuses by default.
allow_private = ["127.0.0.0/8"]
auth = {{ type = "oauth2_client_credentials", token_url = "{token_url}", client_id = "hookyard", client_secret = "${{env:ERP_SECRET}}", scopes = ["orders.read", "orders.write"], client_auth = "{client_auth}" }}

[connections.plain]
base_url = "https://plain.example"
auth = {{ type = "query", name = "key", value = "${{env:KEY}}" }}
"#
    )
}

/// A token endpoint response.
pub fn token_body(token: &str, expires_in: Option<u64>) -> serde_json::Value {
    let mut body = serde_json::json!({ "access_token": token, "token_type": "Bearer" });
    if let Some(expires_in) = expires_in {
        body["expires_in"] = expires_in.into();
    }
    body
}

/// Mounts a token endpoint at `/token` answering `template`, at most `times` times when given.
pub async fn mount_token(server: &MockServer, template: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(matchers::method("POST")).and(matchers::path("/token"));
    let mock = match times {
        Some(n) => mock.respond_with(template).up_to_n_times(n),
        None => mock.respond_with(template),
    };
    mock.mount(server).await;
}

pub async fn token_requests(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// An authorization server answering every token request with `token`, after `delay`.
pub async fn authorization_server(token: &str, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let template = ResponseTemplate::new(200)
        .set_body_json(token_body(token, Some(3600)))
        .set_delay(delay);
    mount_token(&server, template, None).await;
    server
}
