//! The token service: OAuth 2.0 access tokens for the connections of the integration file,
//! served to egress over gRPC (`hookyard.token.v1.TokenService`).
//!
//! Owns:
//! - the client credentials grant (RFC 6749 §4.4) against each connection's `token_url`, with
//!   `client_secret_basic` or `client_secret_post` client authentication and scopes (`grant`);
//! - the in-memory token cache with single-flight fetching (`cache`);
//! - the gRPC API and its mapping of failures to status codes (`service`, [`Error`]).
//!
//! Does not own: making partner calls (egress does, and asks here for a token, then calls
//! `InvalidateToken` when a partner answers 401), the authorization code grant, refresh tokens and
//! encrypted persistence of tokens in NATS KV (later issues; they belong in new modules beside
//! `grant` and `cache`).
//!
//! Design choices:
//! - **Freshness.** A token is handed out until `expires_in` minus a skew of 10 % of its
//!   lifetime, at most 30 s, so a caller never receives a token about to expire in flight. A
//!   token response without `expires_in` is cached for 5 minutes (`cache::DEFAULT_LIFETIME`);
//!   a partner that revokes it earlier answers 401, and egress then invalidates it.
//! - **Single flight.** Each connection has its own `tokio::sync::Mutex`, held while its token
//!   is fetched: concurrent callers for one connection wait for that one request and share its
//!   outcome, success or failure (so a failing authorization server sees one request per wave of
//!   callers, not one per caller); different connections never wait on each other.
//! - **Status codes** (see [`Error::code`]): unreachable authorization server, timeout (10 s),
//!   5xx, 408 and 429 → `UNAVAILABLE`; a 4xx refusal → `FAILED_PRECONDITION` with the RFC 6749
//!   `error` code (sanitised; `error_description` is never passed on, as servers sometimes echo
//!   the request in it); a malformed token response → `UNAVAILABLE` (the server misbehaves, a
//!   later attempt may succeed, and it is no bug of ours); unknown or non-OAuth 2.0 connection →
//!   `NOT_FOUND`.
//! - **Secrets.** Cached tokens are [`secrecy::SecretString`]s; no token, client secret or
//!   response body reaches a log line or an error message. The HTTP client follows no
//!   redirects (as the `oauth2` crate recommends) and ignores proxy environment variables.

mod cache;
mod error;
mod grant;
mod service;

use std::sync::Arc;

use hookyard_core::Integration;
use hookyard_proto::token::v1::token_service_server::TokenServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;

/// What the token service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The loaded integration file; its `oauth2_client_credentials` connections are served.
    pub integration: Arc<Integration>,
}

/// Serves `TokenService` and `grpc.health.v1` on `listener` until `shutdown` is cancelled, then
/// finishes the requests in flight and returns.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let tokens = cache::Tokens::new(&settings.integration)?;
    let (reporter, health) = hookyard_core::health::service();
    hookyard_core::health::set_serving(&reporter, true).await;
    tracing::info!(
        address = ?listener.local_addr().ok(),
        connections = tokens.len(),
        "token service listening"
    );
    let signal = async move {
        shutdown.cancelled().await;
        hookyard_core::health::set_serving(&reporter, false).await;
        tracing::info!("token service draining");
    };
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(TokenServiceServer::new(service::TokenApi::new(tokens)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            signal,
        )
        .await
        .map_err(Error::Serve)
}
