//! The token service: OAuth 2.0 access tokens for the connections of the integration file,
//! served to egress over gRPC (`hookyard.token.v1.TokenService`), and the consent page for
//! connections a person must authorize.
//!
//! Owns:
//! - the grants against each connection's authorization server (`grant`): client credentials
//!   (RFC 6749 §4.4), authorization code with PKCE S256 (§4.1, RFC 7636) and refresh (§6);
//!   client authentication `client_secret_basic`, `client_secret_post` or `private_key_jwt`
//!   (RFC 7523, `assertion`), plus `audience` and `extra_params` on every token request;
//! - the consent page (`consent`, `page`): connections and their state, Connect, the callback;
//! - the token store (`store`, `keys`): the `HOOKYARD_TOKENS` KV bucket, every record sealed
//!   with AES-256-GCM;
//! - renewal and single flight (`cache` in one process, `flight` across replicas);
//! - the connections of the file as it is now (`live`): replaced when the file changes;
//! - the gRPC API and its mapping of failures to status codes (`service`, [`Error`]).
//! - `metrics`: `GetToken` outcomes per connection, served at `GET /metrics` on the gRPC
//!   listener (which also accepts HTTP/1.1 for Prometheus).
//!
//! Does not own: making partner calls (egress does, and asks here for a token, then calls
//! `InvalidateToken` when a partner answers 401).
//!
//! Two modes. Without [`Settings::store`], [`run`] keeps tokens in memory and serves only
//! `oauth2_client_credentials` connections (an `oauth2_authorization_code` connection fails the
//! start). With it, every token is kept in NATS KV, encrypted, so tokens survive restarts and
//! replicas share them, and the consent page is served; `hookyard-token` runs in this mode
//! when it has a token key (`HOOKYARD_TOKEN_KEYS` or `--token-key-file`).
//!
//! Design choices:
//! - **Freshness.** A token is handed out until `expires_in` minus a skew (default 10 % of its
//!   lifetime, at most 30 s; `--refresh-skew` sets it), so a caller never receives a token
//!   about to expire in flight. A token response without `expires_in` is renewed after
//!   5 minutes (`cache::DEFAULT_LIFETIME`); a partner that revokes it earlier answers 401, and
//!   egress then invalidates it.
//! - **Single flight.** In one process, each connection has its own `tokio::sync::Mutex`, held
//!   while its token is fetched: concurrent callers wait for that one request and share its
//!   outcome. Across replicas (`flight`), the replica that renews takes the KV key
//!   `lock.<connection>` (written only if absent, with a 30 s TTL so a crashed holder frees it),
//!   reads the record again (another replica may have just renewed), renews, stores, and
//!   releases the lock; the others serve the old access token while it is valid, or poll the
//!   record (at most 20 s). One refresh request per connection per expiry, whatever the number
//!   of replicas and callers.
//! - **Refresh tokens.** A rotated refresh token is stored before the new access token is
//!   handed out (a crash never loses the only valid refresh token); a response without one keeps
//!   the old one. `invalid_grant` marks the connection as needing consent and publishes
//!   `{"connection": …, "reason": "invalid_grant"}` on `hookyard.token.needs_consent`
//!   (namespaced like every subject). An unreachable, slow (10 s) or failing (5xx, 408, 429)
//!   server keeps the old tokens: the old access token is served while valid, and renewal is
//!   retried after a backoff (1 s doubling to 60 s, recorded in the record so every replica
//!   honours it); without a valid access token callers get `UNAVAILABLE`.
//! - **Storage.** Keys in the bucket: `token.<connection>` (the record), `flow.<state>` (a
//!   pending consent: the PKCE verifier, 10 min TTL, taken once by whichever replica gets the
//!   callback), `lock.<connection>`. Records and flows are sealed with AES-256-GCM under the
//!   highest-versioned key, with the KV key and key version as associated data: a record
//!   copied under another connection fails to open; older key versions still open, and a
//!   record is re-sealed with the current key on its next write. A record that does not open
//!   is an error (`FAILED_PRECONDITION`), never overwritten or decrypted to garbage. Keys are
//!   never logged.
//! - **Consent page.** `GET /` lists `oauth2_authorization_code` connections as connected,
//!   needs consent or broken; `GET /connect/<name>` starts the flow with PKCE S256, a random
//!   one-time `state` and the exact configured `redirect_uri`; `GET /oauth/callback` takes the
//!   state once, checks `iss` against `issuer` (RFC 9207) when the server sends it, exchanges
//!   the code and stores the tokens. Failures are HTML pages with 400 (state, `iss`, refused
//!   code), 502 (server failing) or 503 (store down); every value is HTML-escaped. The page has
//!   no login of its own: expose it only to operators (compose binds it to 127.0.0.1).
//! - **Status codes** (see [`Error::code`]): unreachable authorization server, timeout, 5xx,
//!   408, 429, a malformed token response, a renewal backing off or held by another replica,
//!   the store unreachable → `UNAVAILABLE`; a 4xx refusal (with the RFC 6749 `error` code,
//!   sanitised; `error_description` is never passed on, as servers sometimes echo the request
//!   in it), a connection needing consent, a record that does not decrypt →
//!   `FAILED_PRECONDITION`; unknown or non-OAuth 2.0 connection → `NOT_FOUND`.
//! - **Secrets.** Tokens are [`secrecy::SecretString`]s in memory and sealed at rest; no token,
//!   client secret, private key, token key or response body reaches a log line or an error
//!   message. The HTTP client follows no redirects (as the `oauth2` crate recommends) and
//!   ignores proxy environment variables.

mod assertion;
mod cache;
mod consent;
mod error;
mod flight;
mod grant;
pub mod keys;
mod live;
mod metrics;
mod page;
mod service;
mod store;

use std::sync::Arc;

use hookyard_core::{Integration, streams::Topology};
use hookyard_proto::token::v1::token_service_server::TokenServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use flight::Policy;
pub use keys::Keys;

/// What the token service needs to run.
#[derive(Debug)]
pub struct Settings {
    /// The loaded integration file; its OAuth 2.0 connections are served.
    pub integration: Arc<Integration>,
    /// The token store; `None` keeps tokens in memory and serves client credentials only.
    pub store: Option<StoreSettings>,
    /// Where to reload the integration file from while running, so an OAuth 2.0 connection
    /// added to it (or changed) is served without a restart; `None` never reloads.
    pub reload: Option<hookyard_core::reload::Reload>,
}

/// The token store: what `oauth2_authorization_code` connections need, and what keeps every
/// token across restarts and shares it between replicas.
#[derive(Debug)]
pub struct StoreSettings {
    /// NATS client (reconnects on its own).
    pub nats: async_nats::Client,
    /// Names of the token bucket and the needs-consent subject.
    pub topology: Topology,
    /// Keys token records are encrypted with.
    pub keys: Arc<Keys>,
    /// When tokens are renewed and how failed renewals are retried.
    pub policy: Policy,
    /// Where the consent page listens (already bound, so a test can use port 0); `None`
    /// serves no consent page.
    pub consent: Option<TcpListener>,
}

/// Serves `TokenService` and `grpc.health.v1` on `listener` until `shutdown` is cancelled,
/// then finishes the requests in flight; the consent page too when the store has a listener
/// for it.
///
/// With a store, serves at once: until the token bucket is set up (NATS may start after the
/// token service) the gRPC health is NOT_SERVING and token requests fail with `UNAVAILABLE`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let Settings {
        integration,
        store,
        reload,
    } = settings;
    let policy = store
        .as_ref()
        .map_or_else(Policy::default, |store| store.policy.clone());
    let tokens = cache::Tokens::new(&integration, store.is_some(), policy.clone())?;
    let tokens = Arc::new(live::Live::new(tokens, store.is_some(), policy));
    if let Some(reload) = reload {
        tokio::spawn(watch(reload, tokens.clone(), shutdown.clone()));
    }
    serve(tokens, store, listener, shutdown).await
}

/// Replaces the tokens whenever the integration file changes and its OAuth 2.0 connections
/// can all be served; otherwise the current ones stay (the watcher logs why).
async fn watch(
    reload: hookyard_core::reload::Reload,
    live: Arc<live::Live>,
    stop: CancellationToken,
) {
    let scope = hookyard_core::config::SecretScope::OAuth2Clients;
    hookyard_core::reload::watch(reload, scope, stop, |integration| {
        live.replace(&integration).map_err(|error| error.chain())
    })
    .await;
}

/// Opens the token store with backoff and hands it to `tokens`; true once it is open, false
/// when `stop` came first.
async fn open_store(tokens: &live::Live, store: StoreSettings, stop: &CancellationToken) -> bool {
    let opened = hookyard_core::retry::until_ok(
        stop,
        || store::Store::open(store.nats.clone(), &store.topology, store.keys.clone()),
        |attempt, error: &Error| {
            tracing::warn!(
                attempt,
                error = error.chain(),
                "token store not ready, retrying"
            );
        },
    )
    .await;
    let Some(opened) = opened else {
        return false;
    };
    tokens.open_store(Arc::new(opened));
    tracing::info!("token store open");
    true
}

async fn serve(
    tokens: Arc<live::Live>,
    mut store: Option<StoreSettings>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // The consent page is served here; the rest of the store settings go to the task that
    // opens the store.
    let consent = store.as_mut().and_then(|store| store.consent.take());
    let (reporter, health) = hookyard_core::health::service();
    hookyard_core::health::set_serving(&reporter, store.is_none()).await;
    if let Some(store) = store {
        let (tokens, reporter, stop) = (tokens.clone(), reporter.clone(), shutdown.clone());
        tokio::spawn(async move {
            if open_store(&tokens, store, &stop).await && !stop.is_cancelled() {
                hookyard_core::health::set_serving(&reporter, true).await;
            }
        });
    }
    tracing::info!(
        address = ?listener.local_addr().ok(),
        consent = ?consent.as_ref().and_then(|l| l.local_addr().ok()),
        connections = tokens.current().len(),
        "token service listening"
    );
    let drain = shutdown.clone();
    let signal = async move {
        drain.cancelled().await;
        hookyard_core::health::set_serving(&reporter, false).await;
        tracing::info!("token service draining");
    };
    let (metrics, registry) = metrics::Metrics::new();
    let grpc = hookyard_core::metrics::serve_grpc(
        tonic::service::Routes::new(health).add_service(TokenServiceServer::new(
            service::TokenApi::new(tokens.clone(), metrics),
        )),
        registry,
        listener,
        signal,
    );
    let grpc = async { grpc.await.map_err(Error::Serve) };
    let http = async {
        let Some(consent) = consent else {
            return Ok(());
        };
        axum::serve(consent, consent::router(tokens.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .map_err(Error::ServeHttp)
    };
    tokio::try_join!(grpc, http).map(|_| ())
}
