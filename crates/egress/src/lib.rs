//! The egress service: every call to a partner API goes through here
//! (`hookyard.egress.v1.EgressService`), so credentials and outbound policy live in one place.
//!
//! Owns:
//! - connection profiles built at start from the integration file: base URL, timeout, auth —
//!   `basic`, `header`, `query`, OAuth 2.0 (`connection`) — and one HTTP client each with the
//!   guarded DNS resolver, the redirect policy and TLS (trusted CAs that replace or extend the
//!   built-in roots, a client certificate for mutual TLS) (`hookyard_outbound::client`, shared
//!   with the token service);
//! - applying the SSRF guard (`hookyard_outbound::guard`): which addresses a connection may
//!   reach, checked on literal hosts, on every resolved address (the HTTP client connects only
//!   to addresses the guard passed) and on every redirect hop; a connection's `allow_private`
//!   ranges lift it, never for metadata addresses;
//! - turning a `CallRequest` into a checked outbound request: method, path that cannot leave the
//!   connection's host, caller headers that cannot override auth (`request`);
//! - making the call (`call`): attempts within the connection's rate and concurrency limits and
//!   circuit breaker (`limits`), retries of repeatable requests with backoff and
//!   `Retry-After` (`retry`), the one retry after a 401 on an OAuth 2.0 connection with a fresh
//!   token from the token service (`token`), the capped response;
//! - the audit record of every attempt on JetStream, best effort (`audit`);
//! - `metrics`: calls by connection and outcome and their duration, served at `GET /metrics`
//!   on the gRPC listener (which also accepts HTTP/1.1 for Prometheus);
//! - the gRPC API (`Call`, `TestConnection`) and the one mapping of failures to status codes
//!   (`service`, [`Error`]).
//!
//! Does not own: fetching or caching OAuth 2.0 tokens (the token service does; egress asks for
//! a token on every call and never keeps one), retries across calls (the worker's redelivery
//! schedule; egress's retries stay within one call and its `Retry-After` cap), and events.
//!
//! Design choices:
//! - Redirects are not followed unless a connection's `follow_redirects` allows hops (a 3xx
//!   comes back as it is); proxy environment variables are ignored: where a call goes is
//!   decided by the connection alone. A `header`-auth connection follows only same-host hops,
//!   as the HTTP client strips `Authorization` on a cross-host hop but not custom headers.
//! - A resolved name is filtered, not refused outright: the client gets the addresses that
//!   pass, and the call is refused (`PERMISSION_DENIED`) only when none does. The guard's
//!   refusal travels through reqwest's error chain and is found there (`Error::transport`).
//! - Retries: only repeatable requests (GET, HEAD, PUT, DELETE, OPTIONS; POST and PATCH with an
//!   idempotency key), on connect errors, timeouts, 429 and 502–504; full-jitter backoff; a
//!   `Retry-After` above `max_retry_after` returns the response instead of waiting, so a
//!   worker's redelivery schedule takes over. The breaker counts attempts without a response
//!   and 5xx answers; while open, calls fail with `UNAVAILABLE` without a request.
//! - Audit: with [`Settings::audit`] set, one JSON record per attempt on
//!   `<prefix>.audit.egress.<connection>.<event id>`
//!   (stream `HOOKYARD_AUDIT`) through a bounded queue; a full queue or failed publish drops the
//!   record with a warning and never fails a call. Egress starts without NATS: the stream is
//!   set up with backoff in the background, calls are served meanwhile (their records wait in
//!   the queue) and the gRPC health is NOT_SERVING until it exists. URLs are recorded with user info, the
//!   `query` auth parameter and secret-looking query values redacted; header values and bodies
//!   never. The event id is `CallRequest.event_id`, else the idempotency key before its `:`.
//! - Paths must start with `/`, be printable ASCII (percent-encode the rest) and contain no `\`,
//!   `#`, or `@` before the query; they are appended to the base URL's path, and the result must
//!   keep the base URL's scheme, host, port and user info. Dot segments are allowed (the URL is
//!   normalised; the host cannot change).
//! - Caller headers named `Authorization`, `Proxy-Authorization`, `Host`, hop-by-hop headers,
//!   `Content-Length`, a connection's own auth header names, and `Idempotency-Key` when the
//!   request sets `idempotency_key`, are dropped: credentials belong to the connection. A query
//!   parameter named like a connection's `query` auth parameter is refused.
//! - Response bodies above [`MAX_RESPONSE_BODY_BYTES`] fail the call with `RESOURCE_EXHAUSTED`
//!   rather than arrive truncated, which a handler could mistake for a whole document. gRPC
//!   messages up to [`MAX_MESSAGE_BYTES`] are accepted and sent; clients must raise their
//!   decoding limit (tonic's default is 4 MiB) to receive large bodies.
//! - Failures without a response: timeout → `DEADLINE_EXCEEDED`, anything else on the way →
//!   `UNAVAILABLE`; token service failures keep their code (`NOT_FOUND` there means the two
//!   services disagree on the configuration and becomes `FAILED_PRECONDITION`). Messages never
//!   hold a URL (it may carry a `query` API key), header values, bodies or tokens.

mod audit;
mod call;
mod connection;
mod error;
mod limits;
mod metrics;
mod request;
mod retry;
mod service;
mod token;

use std::sync::Arc;

use hookyard_core::Integration;
use hookyard_proto::egress::v1::egress_service_server::EgressServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use audit::Audit;
pub use error::Error;

/// Largest partner response body returned (a connection's `max_response_bytes` may lower it);
/// larger ones fail the call.
pub const MAX_RESPONSE_BODY_BYTES: usize =
    hookyard_core::config::outbound::MAX_RESPONSE_BYTES as usize;

/// Largest gRPC message egress accepts or sends (a body plus room for headers).
pub const MAX_MESSAGE_BYTES: usize = hookyard_core::grpc::MAX_MESSAGE_BYTES;

/// What the egress service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The loaded integration file; its connections are served.
    pub integration: Arc<Integration>,
    /// gRPC endpoint of the token service, e.g. `http://127.0.0.1:50053`; required when a
    /// connection uses `oauth2_client_credentials`.
    pub token_endpoint: Option<String>,
    /// Where to reload the integration file from while running, so a connection added to it
    /// is served without a restart; `None` never reloads.
    pub reload: Option<hookyard_core::reload::Reload>,
    /// Where every outbound attempt is recorded (see [`Audit::start`]); `None` records
    /// nothing. With it, the gRPC health is NOT_SERVING until the audit stream is set up.
    pub audit: Option<Audit>,
}

/// Serves `EgressService` and `grpc.health.v1` on `listener` until `shutdown` is cancelled,
/// then finishes the calls in flight and returns.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let Settings {
        integration,
        token_endpoint,
        reload,
        audit,
    } = settings;
    let connections = connection::Connections::new(&integration)?;
    let tokens = token::TokenClient::new(token_endpoint.as_deref(), &connections)?;
    let count = connections.len();
    let connections = Arc::new(connection::Live::new(connections));
    if let Some(reload) = reload {
        tokio::spawn(watch(
            reload,
            connections.clone(),
            token_endpoint.is_some(),
            shutdown.clone(),
        ));
    }
    let (reporter, health) = hookyard_core::health::service();
    report_ready(&reporter, audit.as_ref(), &shutdown).await;
    tracing::info!(
        address = ?listener.local_addr().ok(),
        connections = count,
        "egress listening"
    );
    let signal = async move {
        shutdown.cancelled().await;
        hookyard_core::health::set_serving(&reporter, false).await;
        tracing::info!("egress draining");
    };
    let (metrics, registry) = metrics::Metrics::new();
    let api =
        EgressServiceServer::new(service::EgressApi::new(connections, tokens, audit, metrics))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    hookyard_core::metrics::serve_grpc(
        tonic::service::Routes::new(health).add_service(api),
        registry,
        listener,
        signal,
    )
    .await
    .map_err(Error::Serve)
}

/// Reports SERVING at once without an audit, else once the audit stream is set up: calls are
/// served meanwhile (their records wait in the audit queue), but egress is not ready until it
/// can keep the records it promises.
async fn report_ready(
    reporter: &tonic_health::server::HealthReporter,
    audit: Option<&Audit>,
    shutdown: &CancellationToken,
) {
    let Some(audit) = audit else {
        return hookyard_core::health::set_serving(reporter, true).await;
    };
    hookyard_core::health::set_serving(reporter, false).await;
    let (audit, reporter, stop) = (audit.clone(), reporter.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = audit.ready() => hookyard_core::health::set_serving(&reporter, true).await,
        }
    });
}

/// Replaces the connections whenever the integration file changes and every connection in it
/// can be built; otherwise the current ones stay (the watcher logs why). Circuit breakers and
/// rate limits start afresh with the new set.
async fn watch(
    reload: hookyard_core::reload::Reload,
    live: Arc<connection::Live>,
    has_token_endpoint: bool,
    stop: CancellationToken,
) {
    let scope = hookyard_core::config::SecretScope::Connections;
    hookyard_core::reload::watch(reload, scope, stop, |integration| {
        let connections =
            connection::Connections::new(&integration).map_err(|error| error.chain())?;
        if !has_token_endpoint && let Some(name) = connections.oauth2().next() {
            return Err(Error::NoTokenEndpoint(name.to_owned()).to_string());
        }
        live.replace(connections);
        Ok(())
    })
    .await;
}
