//! The admin API (`hookyard.admin.v1.AdminService`): find any event, see what each handler did
//! with it, replay what failed, purge dead letters, pause and resume handlers, read egress's
//! audit — served by the router on its own listener, as gRPC and as JSON over HTTP.
//!
//! - `auth`: the bearer token (from a secret reference), compared in constant time, in front of
//!   the gRPC and JSON routes; a refusal is UNAUTHENTICATED / 401;
//! - `console`: the web console under `/console`, HTML pages over the modules below, signed in
//!   with the same token (then a session cookie, and a CSRF token on every action);
//! - `scan`: bounded reads of a stream through ephemeral ordered consumers (a start sequence or
//!   time, a filter subject, an end known when the scan begins), never a whole stream in memory;
//! - `events`: `ListEvents`, `GetEvent`, `Tail` over `HOOKYARD_IN`, with the redacted view of an
//!   event ([`hookyard_core::redact`]);
//! - `deliveries`: what each handler did with an event, from the workers' outcome records and
//!   egress's audit records (both in `HOOKYARD_AUDIT`, found by the event id in their subjects);
//! - `dead`: `ListDeadLetters`, `GetDeadLetter`, `PurgeDeadLetters` over `HOOKYARD_DLQ`;
//! - `replay`: `Replay` and `ListReplays`: new work items for events or dead letters, each
//!   replay recorded on `hookyard.audit.replay`;
//! - `handlers`: `ListHandlers`, `PauseHandler`, `ResumeHandler` on the handlers' consumers
//!   (JetStream consumer pause: work waits in the work stream, nothing is dropped);
//! - `audit`: `ListAudit` over egress's records;
//! - `service` and `rest`: the gRPC service and the JSON mapping, both thin over the above;
//! - `error`: the one mapping of failures to gRPC codes and HTTP statuses.

mod audit;
mod auth;
mod console;
mod dead;
mod deliveries;
mod error;
mod events;
mod handlers;
mod replay;
mod rest;
mod scan;
mod service;

use std::sync::Arc;

use async_nats::jetstream;
use hookyard_core::streams::Topology;
use hookyard_proto::admin::v1::admin_service_server::AdminServiceServer;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{MIN_TOKEN_CHARS, TokenError, check_token};
pub use console::Settings as ConsoleSettings;
pub(crate) use error::Error;

use crate::table::Table;

/// The admin API's part of the router's settings.
pub struct Settings {
    /// Where the admin API listens (already bound, so a test can use port 0).
    pub listener: TcpListener,
    /// The bearer token every call must carry (see [`check_token`]), and the console's
    /// sign-in form takes.
    pub token: SecretString,
    /// What the web console reaches besides the router.
    pub console: ConsoleSettings,
}

/// What every admin call needs.
pub(crate) struct Context {
    pub js: jetstream::Context,
    pub topology: Topology,
    pub table: Arc<Table>,
    /// Cancelled when the router stops: ends tails and replays' progress streams.
    pub stop: CancellationToken,
}

/// Serves the admin API on `settings.listener` until `stop` is cancelled.
pub(crate) async fn serve(
    settings: Settings,
    nats: async_nats::Client,
    topology: Topology,
    table: Arc<Table>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let ctx = Arc::new(Context {
        js: jetstream::new(nats),
        topology,
        table,
        stop: stop.clone(),
    });
    replay::prepare(&ctx);
    let grpc = AdminServiceServer::new(service::Api::new(ctx.clone()))
        .max_decoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES);
    let guard = Arc::new(auth::Guard::new(&settings.token));
    // The console is merged after the bearer layer: its pages have their own guard (a session).
    let app = tonic::service::Routes::new(grpc)
        .into_axum_router()
        .merge(rest::routes(ctx.clone()))
        .layer(axum::middleware::from_fn_with_state(
            guard.clone(),
            auth::require,
        ))
        .merge(console::routes(ctx, guard, settings.console));
    tracing::info!(
        address = %settings.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "admin api listening"
    );
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(app))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(settings.listener),
            stop.cancelled(),
        )
        .await
}
