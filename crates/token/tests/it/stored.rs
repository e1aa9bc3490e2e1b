//! The token service with its token store (real NATS) and consent page, in-process on port 0,
//! and a browser that follows the consent flow one redirect at a time.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_nats::jetstream;
use base64::Engine as _;
use hookyard_core::{
    Integration,
    streams::{StreamLimits, Topology},
};
use hookyard_proto::token::v1::token_service_client::TokenServiceClient;
use hookyard_testkit::{Nats, unique_namespace};
use hookyard_token::{Keys, Policy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::TokenService;
use hookyard_testkit::oauth::{
    AuthServer, CLIENT_SECRET, browser, click_connect, consent_at, open,
};

/// A key list with one key of version `version`, all bytes `byte`.
pub fn key(version: u32, byte: u8) -> String {
    format!(
        "{version}:{}",
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    )
}

/// A namespace whose token bucket is small.
pub fn topology() -> Topology {
    let mut topology = Topology::new(&unique_namespace("tk"));
    topology.limits = StreamLimits {
        tokens_max_bytes: 1024 * 1024,
        ..StreamLimits::default()
    };
    topology
}

/// An integration file with `crm` (authorization code) at `server`, redirecting to `redirect`.
pub fn crm_config(server: &str, redirect: &str) -> String {
    format!(
        r#"
[connections.crm]
base_url = "https://crm.example"
allow_private = ["127.0.0.0/8"]
auth = {{ type = "oauth2_authorization_code", authorize_url = "{server}/authorize", token_url = "{server}/token", client_id = "hookyard", client_secret = "${{env:CRM_SECRET}}", scopes = ["contacts.read"], redirect_uri = "{redirect}", issuer = "{server}" }}
"#
    )
}

/// A running token service with a store; stops when dropped.
pub struct Stored {
    /// The gRPC side, as in the in-memory tests (stops the service when dropped).
    service: TokenService,
    /// `http://127.0.0.1:<port>` of the consent page.
    pub consent: String,
}

impl std::ops::Deref for Stored {
    type Target = TokenService;
    fn deref(&self) -> &TokenService {
        &self.service
    }
}

/// Listeners bound before the config is written (it names the consent port).
pub struct Ports {
    grpc: TcpListener,
    consent: TcpListener,
    pub consent_url: String,
}

impl Ports {
    pub async fn bind() -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let consent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let consent_url = format!("http://{}", consent.local_addr().expect("address"));
        Self {
            grpc,
            consent,
            consent_url,
        }
    }

    /// The redirect URI of the consent callback.
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/callback", self.consent_url)
    }
}

impl Stored {
    pub async fn spawn(
        nats: &Nats,
        topology: &Topology,
        ports: Ports,
        config: &str,
        keys: &str,
        policy: Policy,
    ) -> Self {
        let env: BTreeMap<&str, &str> = [("CRM_SECRET", CLIENT_SECRET)].into();
        let integration = Integration::parse(config, &|name| env.get(name).map(|v| v.to_string()))
            .expect("valid integration");
        let address = ports.grpc.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let store = hookyard_token::StoreSettings {
            nats: nats.client().await.expect("nats client"),
            topology: topology.clone(),
            keys: Arc::new(Keys::parse(keys).expect("keys")),
            policy,
            consent: Some(ports.consent),
        };
        let settings = hookyard_token::Settings {
            integration: Arc::new(integration),
            store: Some(store),
            reload: None,
        };
        tokio::spawn(hookyard_token::run(settings, ports.grpc, shutdown.clone()));
        // The service answers at once but serves tokens only once its bucket is set up.
        let endpoint = format!("http://{address}");
        hookyard_testkit::wait_for(Duration::from_secs(30), "token store open", || {
            let endpoint = endpoint.clone();
            async move {
                hookyard_core::health::probe(&endpoint, Duration::from_secs(2))
                    .await
                    .is_ok()
            }
        })
        .await
        .expect("token service serving");
        let client = TokenServiceClient::connect(endpoint)
            .await
            .expect("connect");
        Self {
            service: TokenService { client, shutdown },
            consent: ports.consent_url,
        }
    }
}

/// An authorization server and a stored token service with connection `crm`.
pub struct Setup {
    pub nats: Nats,
    pub topology: Topology,
    pub server: AuthServer,
    pub service: Stored,
}

impl Setup {
    /// Tokens live `expires_in` s; the service renews with `policy`.
    pub async fn start(expires_in: u64, policy: Policy) -> Self {
        let nats = Nats::start().await.expect("nats");
        let topology = topology();
        let ports = Ports::bind().await;
        let server = AuthServer::start(&ports.redirect_uri(), expires_in).await;
        let config = crm_config(&server.url, &ports.redirect_uri());
        let service = Stored::spawn(&nats, &topology, ports, &config, &key(1, 1), policy).await;
        Self {
            nats,
            topology,
            server,
            service,
        }
    }

    /// The raw (sealed) bytes of a key in the token bucket.
    pub async fn raw(&self, key: &str) -> Option<bytes::Bytes> {
        let js = jetstream::new(self.nats.client().await.expect("client"));
        let kv = js
            .get_key_value(self.topology.tokens_bucket())
            .await
            .expect("bucket");
        kv.get(key).await.expect("read")
    }
}

/// A policy for tests: quick retries.
pub fn quick_policy() -> Policy {
    Policy {
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(400),
        wait_limit: Duration::from_secs(10),
        ..Policy::default()
    }
}

/// The whole flow; the callback's status and page.
pub async fn connect(setup: &Setup) -> (u16, String) {
    let browser = browser();
    let authorize = click_connect(&browser, &setup.service.consent, "crm").await;
    let callback = consent_at(&browser, &authorize).await;
    open(&browser, &callback).await
}
