//! The shape of the integration file. Every field's `///` line is user documentation.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Deserializer};

use super::{inbound::RateLimit, secret::Secret};
use crate::expr::Expr;

/// Where events come from: a listen endpoint a partner sends webhooks to (`path`), or a
/// partner API ingress polls (`poll`).
#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    /// URL path the endpoint listens on, e.g. `/hooks/shop`. Must start with `/`. Required
    /// unless the source has `poll`.
    #[serde(default)]
    pub path: Option<String>,
    /// Turns a partner API without webhooks into events: ingress calls it through a connection
    /// every `every` (or on a cron `schedule`), page by page, and each new or changed record
    /// becomes one event, e.g. `{ connection = "erp", path = "/v1/orders", every = "30s",
    /// records = ".data", record_id = ".id" }`. A source has either `path` or `poll`.
    #[serde(default)]
    pub poll: Option<super::poll::Poll>,
    /// HTTP methods accepted (default `["POST"]`); others get 405.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// How the sender proves who it is (default `{ type = "none" }`).
    #[serde(default)]
    pub auth: SourceAuth,
    /// Largest body accepted, in bytes (default 1 MiB); larger requests get 413 unread.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Client addresses allowed to send, as CIDR blocks or single addresses, e.g.
    /// `["203.0.113.0/24", "2001:db8::/32"]`; others get 403. Default: any address.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Proxies (CIDR blocks) whose `X-Forwarded-For` is believed: when the peer is one of them,
    /// the client is the right-most address in the header that is not (default none).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Requests accepted per second with a burst, e.g. `{ per_second = 50, burst = 100 }`;
    /// over it the sender gets 429 with `Retry-After`. Default: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Media types accepted, e.g. `["application/json"]` (parameters and case are ignored);
    /// others get 415. Default: any.
    #[serde(default)]
    pub content_types: Vec<String>,
    /// Longest wait for the whole body once the headers are in (default `10s`); slower
    /// senders get 408.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Where the event type is read from, e.g. `{ header = "X-Shop-Topic" }` or `{ jq = ".type" }`.
    pub event_type: Option<Expr>,
    /// The sender's delivery id, used to store a retried delivery once: an expression such as
    /// `{ header = "X-Shop-Delivery-Id" }` or a provider preset such as `{ preset = "stripe" }`.
    /// Default: the preset of the `signature` scheme when it has one, else a hash of the body.
    pub dedup_key: Option<super::DedupKey>,
    /// How long a repeat of an accepted event id is answered 202 with that id and not stored
    /// again, e.g. `"3d"` or `"12h"`; `"0s"` turns it off. At most `7d`, how long the
    /// `HOOKYARD_DEDUP` bucket keeps an id. Default: `7d` when the source has a sender id (a
    /// `dedup_key`, or the preset of its `signature` scheme); off when the event id is a hash
    /// of the body, so the same body sent again later (a periodic ping) is a new event, and
    /// only a retry within the stream's 2-minute duplicate window is stored once.
    #[serde(default, with = "humantime_serde")]
    pub dedup_window: Option<Duration>,
    /// A signature the sender computes over the raw body, checked before the event is stored,
    /// e.g. `{ scheme = "github", secrets = ["${env:GITHUB_WEBHOOK_SECRET}"] }`. Default: none.
    #[serde(default)]
    pub signature: Option<Signature>,
    /// A verification request of the sender that ingress answers itself, never storing it,
    /// e.g. `{ kind = "slack" }` or `{ kind = "websub", verify_token = "${env:META_VERIFY_TOKEN}" }`.
    /// Default: none.
    #[serde(default)]
    pub handshake: Option<super::Handshake>,
    /// The answer to an accepted event, e.g. `{ status = 200, body = "ok" }`, or
    /// `{ mode = "sync", deadline = "3s" }` to answer with a handler's `reply` step.
    /// Default: 202 with `{"id": "<event id>"}`.
    #[serde(default)]
    pub reply: super::Reply,
}

impl Source {
    /// The dedup key expression ingress evaluates: `dedup_key`, else the preset of the
    /// signature scheme, else none (the body hash is used).
    pub fn dedup_expr(&self) -> Option<Expr> {
        match (&self.dedup_key, &self.signature) {
            (Some(key), _) => Some(key.expr()),
            (None, Some(signature)) => {
                super::DedupPreset::of_signature(signature).map(|p| p.expr())
            }
            (None, None) => None,
        }
    }

    /// How long ingress recognises a repeat of an accepted event id: `dedup_window`, else the
    /// bucket's retention for a source with a sender id; `None` when off.
    pub fn effective_dedup_window(&self) -> Option<Duration> {
        let window = self.dedup_window.unwrap_or(if self.has_sender_id() {
            crate::streams::StreamLimits::DEFAULT_DEDUP_WINDOW
        } else {
            // Without a sender id two distinct events with one body share an id: a long
            // window would answer the second 202 and drop it.
            Duration::ZERO
        });
        (!window.is_zero()).then_some(window)
    }

    /// Whether the event id comes from the sender's delivery id rather than the body hash
    /// (though a request without that id still falls back to the hash).
    fn has_sender_id(&self) -> bool {
        self.dedup_key.is_some()
            || self
                .signature
                .as_ref()
                .and_then(super::DedupPreset::of_signature)
                .is_some()
    }
}

/// How a source's requests are signed. Every scheme takes a list of `secrets`, each tried in
/// turn, so a secret can be rotated without downtime: list the new one beside the old one,
/// switch the sender over, then drop the old one.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum Signature {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`, or Svix's
    /// `svix-id`, `svix-timestamp`, `svix-signature`): HMAC-SHA256 `v1` signatures with
    /// `whsec_…` secrets and ed25519 `v1a` signatures with `whpk_…` keys.
    StandardWebhooks {
        /// Secrets (`whsec_<base64>`) and public keys (`whpk_<base64>`), as secret references.
        secrets: Vec<Secret>,
        /// Largest difference between `webhook-timestamp` and the clock (default `5m`).
        #[serde(default = "default_tolerance", with = "humantime_serde")]
        tolerance: Duration,
    },
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github {
        /// Webhook secrets, as secret references.
        secrets: Vec<Secret>,
    },
    /// Stripe: `Stripe-Signature: t=<timestamp>,v1=<hex HMAC-SHA256 of "{t}.{body}">`.
    Stripe {
        /// Endpoint signing secrets (`whsec_…`, used as is), as secret references.
        secrets: Vec<Secret>,
        /// Largest difference between `t` and the clock (default `5m`).
        #[serde(default = "default_tolerance", with = "humantime_serde")]
        tolerance: Duration,
    },
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.
    Shopify {
        /// App client secrets, as secret references.
        secrets: Vec<Secret>,
    },
    /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{ts}:{body}">` with the timestamp
    /// in `X-Slack-Request-Timestamp`.
    Slack {
        /// Signing secrets, as secret references.
        secrets: Vec<Secret>,
        /// Largest difference between `X-Slack-Request-Timestamp` and the clock (default `5m`).
        #[serde(default = "default_tolerance", with = "humantime_serde")]
        tolerance: Duration,
    },
    /// Any other HMAC signature in one header, described by the fields below.
    Hmac(HmacSignature),
}

/// A generic HMAC signature: `header = prefix + encoding(HMAC(secret, content))`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacSignature {
    /// Shared secrets (used as raw bytes), as secret references.
    pub secrets: Vec<Secret>,
    /// Header holding the signature, e.g. `X-Signature`.
    pub header: String,
    /// Hash function of the HMAC: `sha256` (default), `sha1` or `sha512`.
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// How the signature is written: `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the signature in the header, e.g. `sha256=` (default none).
    pub prefix: Option<String>,
    /// What is signed: a template of `{body}`, `{timestamp}` and `{id}` with literal text
    /// between them, e.g. `"{timestamp}.{body}"` (default `"{body}"`).
    #[serde(default = "default_content")]
    pub content: String,
    /// Header holding the Unix timestamp (seconds) put in `{timestamp}`; when set, requests
    /// outside `tolerance` are refused.
    pub timestamp_header: Option<String>,
    /// Header holding the delivery id put in `{id}`.
    pub id_header: Option<String>,
    /// Largest difference between the timestamp header and the clock (default `5m`).
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub tolerance: Duration,
}

/// Hash function of an HMAC signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA1 (only for senders that offer nothing better).
    Sha1,
    /// HMAC-SHA512.
    Sha512,
}

/// Text encoding of a signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Hexadecimal, either case.
    #[default]
    Hex,
    /// Standard base64 (`+/`), padding optional.
    Base64,
}

impl Signature {
    /// The secrets of any scheme.
    pub fn secrets(&self) -> &[Secret] {
        match self {
            Self::StandardWebhooks { secrets, .. }
            | Self::Github { secrets }
            | Self::Stripe { secrets, .. }
            | Self::Shopify { secrets }
            | Self::Slack { secrets, .. }
            | Self::Hmac(HmacSignature { secrets, .. }) => secrets,
        }
    }

    /// The secrets of any scheme, for resolving them.
    pub fn secrets_mut(&mut self) -> &mut [Secret] {
        match self {
            Self::StandardWebhooks { secrets, .. }
            | Self::Github { secrets }
            | Self::Stripe { secrets, .. }
            | Self::Shopify { secrets }
            | Self::Slack { secrets, .. }
            | Self::Hmac(HmacSignature { secrets, .. }) => secrets,
        }
    }
}

/// One piece of a [`HmacSignature::content`] template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentPart<'a> {
    /// Text signed as is.
    Literal(&'a str),
    /// The raw request body.
    Body,
    /// The value of the timestamp header.
    Timestamp,
    /// The value of the id header.
    Id,
}

/// Splits a content template into its pieces. `{` always opens a placeholder, which must be
/// one of `{body}`, `{timestamp}` and `{id}`; the error names what is wrong.
pub fn content_parts(template: &str) -> Result<Vec<ContentPart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(ContentPart::Literal(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            "unclosed '{' (placeholders are {body}, {timestamp} and {id})".to_owned()
        })?;
        parts.push(match &after[..close] {
            "body" => ContentPart::Body,
            "timestamp" => ContentPart::Timestamp,
            "id" => ContentPart::Id,
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} (use {{body}}, {{timestamp}} or {{id}})"
                ));
            }
        });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(ContentPart::Literal(rest));
    }
    Ok(parts)
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
        /// Expected password (a secret reference); or `passwords`.
        #[serde(default)]
        password: Option<Secret>,
        /// Several accepted passwords, any of which is accepted, to rotate without downtime;
        /// or `password`.
        #[serde(default)]
        passwords: Vec<Secret>,
    },
    /// Basic credentials (`base64(user:password)`) in a query parameter, for senders that
    /// cannot set headers (Boomi's convention). The parameter is not stored with the event.
    QueryBasic {
        /// Query parameter holding the credentials, e.g. `boomi_auth`.
        param: String,
        /// Expected user name.
        username: String,
        /// Expected password (a secret reference); or `passwords`.
        #[serde(default)]
        password: Option<Secret>,
        /// Several accepted passwords (secret references); or `password`.
        #[serde(default)]
        passwords: Vec<Secret>,
    },
    /// A shared key in a header or a query parameter (set exactly one of `header` and
    /// `query`), compared in constant time with every key in `keys`. It is not stored.
    ApiKey {
        /// Header holding the key, e.g. `X-Api-Key`.
        header: Option<String>,
        /// Query parameter holding the key, e.g. `api_key`.
        query: Option<String>,
        /// Accepted keys (secret references); several allow rotation.
        keys: Vec<Secret>,
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
    /// Only events for which this jq filter is true, e.g. `{ jq = ".order.total > 1000" }`:
    /// it runs on the body, with `$event` (`id`, `source`, `type`, `headers`). An event whose
    /// body is not JSON does not match. Default: every event of the type.
    #[serde(default)]
    pub when: Option<Expr>,
}

/// A named pipeline of steps, run by workers started with `--handler NAME`.
#[derive(Debug, Clone, Deserialize)]
pub struct Handler {
    /// Steps run in order for each event (see [`super::steps`]).
    pub steps: Vec<super::Step>,
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
    /// Address ranges (CIDR blocks or addresses) this connection may reach although the SSRF
    /// guard refuses them, e.g. `["10.20.0.0/16"]` for a partner on a private network. Default
    /// none: loopback, private, link-local, CGNAT and reserved addresses are refused; metadata
    /// addresses (169.254.169.254, fd00:ec2::254, …) are refused even when listed.
    #[serde(default)]
    pub allow_private: Vec<String>,
    /// Redirect hops followed (default 0: a 3xx is returned as it is); each hop is checked by
    /// the SSRF guard again.
    #[serde(default)]
    pub follow_redirects: u32,
    /// Trusted CA bundle and client certificate, e.g. `{ ca = "/etc/hookyard/erp-ca.pem" }`.
    /// Default: the built-in roots, no client certificate.
    #[serde(default)]
    pub tls: Option<super::outbound::ConnectionTls>,
    /// Retries within one call (default `{ max_attempts = 3, initial_backoff = "200ms",
    /// max_backoff = "5s", max_retry_after = "10s" }`).
    #[serde(default)]
    pub retry: super::outbound::Retry,
    /// Requests sent per second with a burst, e.g. `{ per_second = 10, burst = 20 }`; calls
    /// over it wait. Default: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Requests in flight at once (default no limit); further calls wait for a free slot.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Circuit breaker (default `{ failures = 5, cool_down = "30s" }`; `failures = 0` disables).
    #[serde(default)]
    pub breaker: super::outbound::Breaker,
    /// Largest response body in bytes (default and maximum 10 MiB); larger ones fail the call.
    #[serde(default = "super::outbound::default_max_response_bytes")]
    pub max_response_bytes: u64,
}

/// Path of the token service's consent callback; every `redirect_uri` of an
/// `oauth2_authorization_code` connection ends in it (a proxy in front may add a prefix).
pub const OAUTH2_CALLBACK_PATH: &str = "/oauth/callback";

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
        /// Client secret (a secret reference); required unless `client_auth = "private_key_jwt"`.
        #[serde(default)]
        client_secret: Option<Secret>,
        /// Scopes requested (default none).
        #[serde(default)]
        scopes: Vec<String>,
        /// How the client authenticates to the token endpoint (default `client_secret_basic`).
        #[serde(default)]
        client_auth: ClientAuth,
        /// The signing key of `client_auth = "private_key_jwt"`, e.g.
        /// `{ key = "${file:/run/secrets/erp-key.pem}", alg = "ES256" }`.
        #[serde(default)]
        private_key_jwt: Option<super::oauth2::PrivateKeyJwt>,
        /// `audience` parameter of the token request (e.g. the API identifier Auth0 and Okta
        /// ask for). Default: none.
        #[serde(default)]
        audience: Option<String>,
        /// Extra parameters of every token request, e.g. `{ resource = "https://api.example" }`.
        #[serde(default)]
        extra_params: BTreeMap<String, String>,
    },
    /// OAuth 2.0 authorization code grant with PKCE: a person consents once on the token
    /// service's consent page; the token service stores the tokens (encrypted) and refreshes
    /// them.
    #[serde(rename = "oauth2_authorization_code")]
    OAuth2AuthorizationCode {
        /// Authorization endpoint the consent page sends the browser to.
        authorize_url: String,
        /// Token endpoint of the authorization server.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret (a secret reference); required unless `client_auth = "private_key_jwt"`.
        #[serde(default)]
        client_secret: Option<Secret>,
        /// Scopes requested (default none).
        #[serde(default)]
        scopes: Vec<String>,
        /// Redirect URI exactly as registered at the authorization server; its path must end
        /// in `/oauth/callback`, the token service's consent callback.
        redirect_uri: String,
        /// Issuer identifier of the authorization server; when set, an `iss` parameter on the
        /// callback (RFC 9207) must equal it. Default: not checked.
        #[serde(default)]
        issuer: Option<String>,
        /// How the client authenticates to the token endpoint (default `client_secret_basic`).
        #[serde(default)]
        client_auth: ClientAuth,
        /// The signing key of `client_auth = "private_key_jwt"`.
        #[serde(default)]
        private_key_jwt: Option<super::oauth2::PrivateKeyJwt>,
        /// Extra parameters of every token request (code exchange and refresh).
        #[serde(default)]
        extra_params: BTreeMap<String, String>,
    },
}

impl ConnectionAuth {
    /// The token endpoint of an OAuth 2.0 connection.
    pub fn token_url(&self) -> Option<&str> {
        match self {
            Self::OAuth2ClientCredentials { token_url, .. }
            | Self::OAuth2AuthorizationCode { token_url, .. } => Some(token_url),
            _ => None,
        }
    }

    /// Whether the token service provides this connection's access tokens.
    pub fn is_oauth2(&self) -> bool {
        matches!(
            self,
            Self::OAuth2ClientCredentials { .. } | Self::OAuth2AuthorizationCode { .. }
        )
    }
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
    /// A JWT signed with the client's private key (RFC 7523 §2.2), see `private_key_jwt`.
    PrivateKeyJwt,
}

fn default_methods() -> Vec<String> {
    vec!["POST".to_owned()]
}
fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}
fn default_content() -> String {
    "{body}".to_owned()
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
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}
