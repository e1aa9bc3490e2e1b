//! The shape of the integration file. Every field's `///` line is user documentation.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Deserializer};

use super::secret::Secret;
use crate::expr::Expr;

/// One listen endpoint a partner sends webhooks to.
#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    /// URL path the endpoint listens on, e.g. `/hooks/shop`. Must start with `/`.
    pub path: String,
    /// HTTP methods accepted (default `["POST"]`); others get 405.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// How the sender proves who it is (default `{ type = "none" }`).
    #[serde(default)]
    pub auth: SourceAuth,
    /// Largest body accepted, in bytes (default 1 MiB); larger requests get 413 unread.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Where the event type is read from, e.g. `{ header = "X-Shop-Topic" }` or `{ jq = ".type" }`.
    pub event_type: Option<Expr>,
    /// The sender's delivery id, used to store a retried delivery once, e.g.
    /// `{ header = "X-Shop-Delivery-Id" }`. Without it the key is a hash of the body.
    pub dedup_key: Option<Expr>,
}

/// Inbound authentication of a source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceAuth {
    /// Anyone may send (use only behind another check).
    #[default]
    None,
    /// HTTP basic authentication, compared in constant time.
    Basic {
        /// Expected user name.
        username: String,
        /// Expected password (a secret reference).
        password: Secret,
    },
}

/// Sends events of matching types to handlers.
#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    /// Event type to match: exact (`order.created`) or a pattern where `*` matches any run of
    /// characters (`order.*`, `*`).
    pub event: String,
    /// Only events from this source (default: any source).
    pub source: Option<String>,
    /// Handlers that each receive their own copy of a matching event (fan-out).
    pub handlers: Vec<String>,
}

/// A named pipeline of steps, run by workers started with `--handler NAME`.
#[derive(Debug, Clone, Deserialize)]
pub struct Handler {
    /// Steps run in order for each event.
    pub steps: Vec<Step>,
    /// Deliveries before the event is dead-lettered (default 5).
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// Delay before each redelivery after a retryable failure; the last entry repeats
    /// (default `["1s", "5s", "30s", "2m"]`).
    #[serde(default = "default_backoff", deserialize_with = "durations")]
    pub backoff: Vec<Duration>,
    /// How long a delivery may run without a progress signal before NATS redelivers it
    /// (default `30s`; workers signal progress while a step runs).
    #[serde(default = "default_ack_wait", with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Events one worker process handles at once (default 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

/// One step of a handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Call a partner API through a connection.
    Http(HttpStep),
}

/// An HTTP call to a partner, made by egress.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// Connection to call through (a key under `[connections]`).
    pub connection: String,
    /// HTTP method (default `POST`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Path (and query) appended to the connection's `base_url`: a string or an expression.
    pub path: Expr,
    /// Extra request headers, each a string or an expression.
    #[serde(default)]
    pub headers: BTreeMap<String, Expr>,
    /// Request body; usually `{ jq = "…" }` mapping the event body. Default: the event body as received.
    pub body: Option<Expr>,
}

/// A partner API: where it is and how to authenticate to it.
#[derive(Debug, Clone, Deserialize)]
pub struct Connection {
    /// Base URL, e.g. `https://erp.example.com`; step paths are appended to it.
    pub base_url: String,
    /// Limit for one request, connect to last byte (default `30s`).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How egress authenticates (default `{ type = "none" }`).
    #[serde(default)]
    pub auth: ConnectionAuth,
}

/// Outbound authentication of a connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectionAuth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password (a secret reference).
        password: Secret,
    },
    /// Fixed headers, e.g. `headers = { "X-Api-Key" = "${env:CARRIER_KEY}" }`.
    Header {
        /// Header name to secret reference.
        headers: BTreeMap<String, Secret>,
    },
    /// An API key in a query parameter.
    Query {
        /// Parameter name.
        name: String,
        /// Parameter value (a secret reference).
        value: Secret,
    },
    /// OAuth 2.0 client credentials grant; the token service fetches and caches the token.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        /// Token endpoint of the authorization server.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret (a secret reference).
        client_secret: Secret,
        /// Scopes requested (default none).
        #[serde(default)]
        scopes: Vec<String>,
        /// How the client authenticates to the token endpoint (default `client_secret_basic`).
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

/// Client authentication at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Credentials in an `Authorization: Basic` header.
    #[default]
    ClientSecretBasic,
    /// Credentials as `client_id` and `client_secret` form fields.
    ClientSecretPost,
}

fn default_methods() -> Vec<String> {
    vec!["POST".to_owned()]
}
fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_max_deliver() -> u32 {
    5
}
fn default_backoff() -> Vec<Duration> {
    [1, 5, 30, 120].map(Duration::from_secs).to_vec()
}
fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    16
}
fn default_method() -> String {
    "POST".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}
