//! Integration tests of egress: the real service (and the real token service) on loopback ports,
//! called over gRPC with the generated clients, against wiremock as partner and authorization
//! server.

mod audit;
mod auth;
mod connection_test;
mod failures;
mod reload;
mod requests;
mod retries;
mod ssrf;
mod startup;
mod tls;

use std::{collections::BTreeMap, sync::Arc};

use hookyard_core::Integration;
use hookyard_proto::egress::v1::{
    CallRequest, CallResponse, Header, egress_service_client::EgressServiceClient,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wiremock::MockServer;

pub const BASIC_PASSWORD: &str = "basic-pass-SECRET";
pub const HEADER_KEY: &str = "header-key-SECRET";
pub const QUERY_KEY: &str = "query-key-SECRET";
pub const CLIENT_SECRET: &str = "client-secret-SECRET";

/// Where the connections of the test integration file point.
pub struct Targets<'a> {
    pub partner: &'a str,
    pub authorization_server: &'a str,
}

/// The test integration file: one connection per kind of auth, all at `partner`, plus `slow`
/// connections with a short timeout and `down` ones where nothing listens.
pub fn config(targets: &Targets<'_>) -> String {
    let partner = targets.partner;
    let token_url = format!("{}/token", targets.authorization_server);
    let down = format!("http://127.0.0.1:{}", closed_port());
    format!(
        r#"
[connections.open]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]

[connections.basic]
base_url = "{partner}/api"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "basic", username = "hookyard", password = "${{env:BASIC_PASSWORD}}" }}

[connections.header]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "header", headers = {{ "X-Api-Key" = "${{env:HEADER_KEY}}" }} }}

[connections.query]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "query", name = "api_key", value = "${{env:QUERY_KEY}}" }}

[connections.erp]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "oauth2_client_credentials", token_url = "{token_url}", client_id = "hookyard", client_secret = "${{env:CLIENT_SECRET}}" }}

[connections.slow-query]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
timeout = "200ms"
auth = {{ type = "query", name = "api_key", value = "${{env:QUERY_KEY}}" }}

[connections.down-query]
base_url = "{down}"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "query", name = "api_key", value = "${{env:QUERY_KEY}}" }}
"#
    )
}

pub fn integration(text: &str) -> Arc<Integration> {
    let env: BTreeMap<&str, &str> = [
        ("BASIC_PASSWORD", BASIC_PASSWORD),
        ("HEADER_KEY", HEADER_KEY),
        ("QUERY_KEY", QUERY_KEY),
        ("CLIENT_SECRET", CLIENT_SECRET),
    ]
    .into();
    Arc::new(
        Integration::parse(text, &|name| env.get(name).map(|v| v.to_string()))
            .expect("valid integration"),
    )
}

/// A port that was just free: nothing listens there.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Egress and the token service running in-process; both stop when dropped.
pub struct Services {
    pub egress: EgressServiceClient<Channel>,
    shutdown: CancellationToken,
}

impl Drop for Services {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Services {
    /// Starts the token service and egress on `config`.
    pub async fn spawn(config: &str) -> Self {
        let shutdown = CancellationToken::new();
        let integration = integration(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let token_endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let settings = hookyard_token::Settings {
            integration: integration.clone(),
            store: None,
            reload: None,
        };
        tokio::spawn(hookyard_token::run(settings, listener, shutdown.clone()));
        Self::spawn_egress(integration, Some(token_endpoint), shutdown).await
    }

    /// Starts egress alone, with the given token service endpoint.
    pub async fn spawn_egress(
        integration: Arc<Integration>,
        token_endpoint: Option<String>,
        shutdown: CancellationToken,
    ) -> Self {
        Self::spawn_egress_audited(integration, token_endpoint, None, shutdown).await
    }

    /// Starts egress alone, recording to `audit` when given.
    pub async fn spawn_egress_audited(
        integration: Arc<Integration>,
        token_endpoint: Option<String>,
        audit: Option<hookyard_egress::Audit>,
        shutdown: CancellationToken,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let settings = hookyard_egress::Settings {
            integration,
            token_endpoint,
            reload: None,
            audit,
        };
        tokio::spawn(hookyard_egress::run(settings, listener, shutdown.clone()));
        let egress = EgressServiceClient::connect(format!("http://{address}"))
            .await
            .expect("connect")
            .max_decoding_message_size(hookyard_egress::MAX_MESSAGE_BYTES);
        Self { egress, shutdown }
    }

    pub async fn call(&self, request: CallRequest) -> Result<CallResponse, tonic::Status> {
        self.egress
            .clone()
            .call(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Starts a partner and the services with every connection pointing at it.
pub async fn partner_and_services() -> (MockServer, Services) {
    let partner = MockServer::start().await;
    let services = Services::spawn(&config(&Targets {
        partner: &partner.uri(),
        authorization_server: "http://127.0.0.1:9",
    }))
    .await;
    (partner, services)
}

/// Egress alone on `config` (no token service), with the test secrets in its environment.
pub async fn egress(config: &str) -> Services {
    Services::spawn_egress(integration(config), None, CancellationToken::new()).await
}

/// A bodiless call.
pub fn call(connection: &str, method: &str, path: &str) -> CallRequest {
    CallRequest {
        connection: connection.to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        ..CallRequest::default()
    }
}

pub fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

pub async fn received(partner: &MockServer) -> Vec<wiremock::Request> {
    partner.received_requests().await.unwrap_or_default()
}

/// Whether any part of a status (message, details, metadata) holds `secret`.
pub fn status_contains(status: &tonic::Status, secret: &str) -> bool {
    format!("{status:?}").contains(secret) || status.message().contains(secret)
}
