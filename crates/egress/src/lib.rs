//! The egress service: every call to a partner API goes through here
//! (`hookyard.egress.v1.EgressService`), so credentials and outbound policy live in one place.
//!
//! Owns:
//! - connection profiles built at start from the integration file: base URL, timeout, one HTTP
//!   client each, and auth — `basic`, `header`, `query`, `oauth2_client_credentials`
//!   (`connection`);
//! - turning a `CallRequest` into a checked outbound request: method, path that cannot leave the
//!   connection's host, caller headers that cannot override auth (`request`);
//! - making the call, reading the capped response, and the one retry after a 401 on an OAuth 2.0
//!   connection (`call`); bearer tokens come from the token service (`token`);
//! - the gRPC API and the one mapping of failures to status codes (`service`, [`Error`]).
//!
//! Does not own: fetching or caching OAuth 2.0 tokens (the token service does; egress asks for
//! a token on every call and never keeps one), retry policy across calls (the worker's), and
//! events.
//!
//! Later issues, with their places ready:
//! - **SSRF guard** (private, loopback, link-local and metadata addresses refused after DNS
//!   resolution unless a connection allows a range): `guard`, called for every outbound URL
//!   before it is sent; it allows everything for now. Its full form needs a DNS resolver on each
//!   connection's client (`reqwest::ClientBuilder::dns_resolver`), built in `connection`.
//! - **Retries and rate limits** per connection: in `call`, around `send`; `attempts` in the
//!   response already counts every HTTP attempt.
//! - **TLS client certificates and trusted CAs**: in `connection::client`, where each
//!   connection's `reqwest::Client` is built.
//!
//! Design choices:
//! - Redirects are never followed (a 3xx comes back as it is) and proxy environment variables
//!   are ignored: where a call goes is decided by the connection alone.
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

mod call;
mod connection;
mod error;
mod guard;
mod request;
mod service;
mod token;

use std::sync::Arc;

use hookyard_core::Integration;
use hookyard_proto::egress::v1::egress_service_server::EgressServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;

/// Largest partner response body returned; larger ones fail the call.
pub const MAX_RESPONSE_BODY_BYTES: usize = 10 * 1024 * 1024;

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
}

/// Serves `EgressService` and `grpc.health.v1` on `listener` until `shutdown` is cancelled,
/// then finishes the calls in flight and returns.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let connections = connection::Connections::new(&settings.integration)?;
    let tokens = token::Tokens::new(settings.token_endpoint.as_deref(), &connections)?;
    let (reporter, health) = hookyard_core::health::service();
    hookyard_core::health::set_serving(&reporter, true).await;
    tracing::info!(
        address = ?listener.local_addr().ok(),
        connections = connections.len(),
        "egress listening"
    );
    let signal = async move {
        shutdown.cancelled().await;
        hookyard_core::health::set_serving(&reporter, false).await;
        tracing::info!("egress draining");
    };
    let api = EgressServiceServer::new(service::EgressApi::new(connections, tokens))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(api)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            signal,
        )
        .await
        .map_err(Error::Serve)
}
