//! `hookyard-demo`: a stand-in partner API and OAuth 2.0 authorization server for the
//! docker-compose quickstart and the compose tests, so the example runs on a fresh machine
//! with nothing else running. It is **not** for production: state lives in memory, tokens die
//! with the process, and any path is accepted as a partner endpoint.
//!
//! # Endpoints
//!
//! - `POST /oauth2/token`: the client credentials grant (RFC 6749 §4.4). The client
//!   authenticates with `client_secret_basic` (credentials form-urlencoded inside
//!   `Authorization: Basic`, §2.3.1) or `client_secret_post` (`client_id` and `client_secret`
//!   in the form), never both. Answers an opaque bearer token with `expires_in` and, when
//!   requested, `scope`; errors are `invalid_request`, `invalid_client` (401) and
//!   `unsupported_grant_type`.
//! - `GET /_demo/calls[?path_prefix=/v1/orders]`: the recorded partner calls, oldest first,
//!   and the number of token requests. `DELETE /_demo/calls` forgets both.
//! - `GET /_demo/healthz`: `ok`.
//! - Any other method and path is a partner call. It is accepted (201 for `POST`, else 200)
//!   with an unexpired bearer token issued here or the configured basic credentials, and
//!   refused with 401 otherwise. Bodies are limited to 1 MiB (413). A request header
//!   `X-Demo-Status: <code>` makes an accepted call answer that status, to show retries.
//!
//! # What is recorded
//!
//! Every partner call, refused ones included: sequence number, method, path, query,
//! `Idempotency-Key`, how it authenticated (`bearer`, `basic`, `none` or `invalid`), the body
//! (JSON, or text when it is not JSON), the status answered and when it arrived. Only the
//! newest [`Settings::max_calls`] are kept. IssuedTokens, passwords and the `Authorization` header
//! are never recorded nor logged; issued tokens are remembered only as SHA-256 digests.
//!
//! # Modules
//!
//! - `grant`: the token endpoint and client authentication;
//! - `partner`: partner calls: authentication, failure injection, recording;
//! - `journal`: the bounded record behind `/_demo/calls`;
//! - `tokens`: issued tokens and their expiry;
//! - `credentials`: decoding the `Authorization` header, comparing secrets;
//! - `form`: strict `application/x-www-form-urlencoded` decoding.

mod credentials;
pub mod enrich;
mod form;
mod grant;
mod journal;
mod partner;
mod tokens;

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use journal::AuthKind;

/// What the demo server accepts and how much it remembers.
#[derive(Clone)]
pub struct Settings {
    /// OAuth 2.0 client id accepted by the token endpoint.
    pub client_id: String,
    /// OAuth 2.0 client secret accepted by the token endpoint.
    pub client_secret: String,
    /// User accepted by partner calls with HTTP basic authentication.
    pub basic_user: String,
    /// Password accepted by partner calls with HTTP basic authentication.
    pub basic_password: String,
    /// Lifetime of issued access tokens, announced as `expires_in`.
    pub token_ttl: Duration,
    /// Most partner calls kept for `/_demo/calls`; older ones are dropped first.
    pub max_calls: usize,
}

impl Settings {
    /// Settings with the defaults `hookyard-demo` uses for everything but the two secrets.
    pub fn new(client_secret: impl Into<String>, basic_password: impl Into<String>) -> Self {
        Self {
            client_id: "hookyard".into(),
            client_secret: client_secret.into(),
            basic_user: "acme-shop".into(),
            basic_password: basic_password.into(),
            token_ttl: Duration::from_secs(3600),
            max_calls: 100_000,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("basic_user", &self.basic_user)
            .field("basic_password", &"[redacted]")
            .field("token_ttl", &self.token_ttl)
            .field("max_calls", &self.max_calls)
            .finish()
    }
}

/// Why the demo server stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Accepting or serving connections failed.
    #[error("failed to serve http")]
    Serve(#[source] std::io::Error),
}

/// Serves the demo endpoints on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "demo partner and authorization server listening");
    }
    axum::serve(listener, router(settings))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)
}

/// State shared by every handler.
struct Demo {
    settings: Settings,
    tokens: Mutex<tokens::IssuedTokens>,
    journal: Mutex<journal::Journal>,
}

type Shared = Arc<Demo>;

fn router(settings: Settings) -> Router {
    let demo = Demo {
        tokens: Mutex::new(tokens::IssuedTokens::new(tokens::CAPACITY)),
        journal: Mutex::new(journal::Journal::new(settings.max_calls)),
        settings,
    };
    Router::new()
        .route("/oauth2/token", post(grant::token))
        .route("/_demo/calls", get(calls).delete(clear_calls))
        .route("/_demo/healthz", get(|| async { "ok" }))
        .fallback(partner::call)
        .with_state(Arc::new(demo))
}

/// No handler panics while holding a lock, and the data stays consistent if one did.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Deserialize)]
struct CallsQuery {
    path_prefix: Option<String>,
}

async fn calls(
    State(demo): State<Shared>,
    Query(query): Query<CallsQuery>,
) -> Json<journal::Snapshot> {
    Json(lock(&demo.journal).snapshot(query.path_prefix.as_deref()))
}

async fn clear_calls(State(demo): State<Shared>) -> StatusCode {
    lock(&demo.journal).clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_debug_redacts_secrets() {
        let shown = format!("{:?}", Settings::new("client-s3cret", "basic-s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("acme-shop"));
    }
}
