//! The HTTP surface: health endpoints, gRPC health, and one webhook handler that looks the
//! request's path up in the table of sources. Every request first passes the HTTP/1 framing
//! rules of [`crate::framing`] (400).
//!
//! Sources are matched by exact path in a table rather than registered as axum routes, so a
//! configured path is never read as axum route syntax (`{id}`, `*rest`) and cannot make the
//! router panic. A request is refused as early and cheaply as possible: path (404), method
//! (405), client address (403), rate (429), credentials (401), media type (415), declared
//! length (413), then the body is read within the limit and the read timeout (413, 408), its
//! signature checked (401), its nesting bounded (400, see [`hookyard_core::json`]), a repeat of
//! an event accepted within the source's dedup window answered 202 with its id without
//! publishing (503 if that cannot be checked; not looked up when the window is off), and the
//! event is published (503 unless JetStream acknowledges it). Handshakes (see
//! [`crate::handshake`]) are answered instead: query-string ones (any `GET`/`POST`) after the
//! address and rate checks, before credentials; body ones after the signature check; neither is
//! published.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    response::{IntoResponse, Response},
    routing::get,
};
use hookyard_core::{
    Integration,
    config::{Handshake, Reply, ReplyMode, Signature},
    envelope::now_ms,
    expr::Expr,
    metrics::METRICS_PATH,
    streams::Topology,
};
use hookyard_proto::event::v1::Envelope;
use http::Method;
use prost::Message;
use tracing::Instrument as _;

use crate::{
    Error,
    access::{self, ClientFilter},
    auth::Authenticator,
    body,
    dedup::{Dedup, Recorded},
    event::{self, Received},
    handshake,
    health::{self, Readiness},
    limits::Limits,
    metrics::Metrics,
    publish::Publisher,
    reply, verify,
};

/// Room left for the NATS headers of an event (message id, event id, source) when comparing
/// its size with the server's `max_payload`.
const NATS_HEADER_ALLOWANCE: usize = 512;

/// One source as ingress serves it, prepared once at start.
#[derive(Debug)]
pub(crate) struct SourceEntry {
    pub name: String,
    pub methods: Vec<Method>,
    /// `Allow` header value for 405 answers.
    pub allow: String,
    pub auth: Authenticator,
    /// Who may send, by address.
    pub client: ClientFilter,
    /// Rate, media types and read timeout.
    pub limits: Limits,
    pub max_body_bytes: u64,
    pub dedup_key: Option<Expr>,
    /// How long a repeat of an accepted event id is absorbed through the dedup bucket; `None`
    /// when off, so the bucket is neither asked nor written.
    pub dedup_window: Option<Duration>,
    /// Checked over the body before publishing, when set.
    pub signature: Option<Signature>,
    /// Verification requests answered instead of published, when set.
    pub handshake: Option<Handshake>,
    /// The answer to an accepted event, and whether to wait for a handler's.
    pub reply: Reply,
}

/// Sources by exact path. Fails on a path ingress reserves or two sources on one path.
pub(crate) fn sources(integration: &Integration) -> Result<HashMap<String, SourceEntry>, Error> {
    let mut table: HashMap<String, SourceEntry> = HashMap::new();
    for (name, source) in &integration.sources {
        // A polling source has no endpoint (see `poll`).
        let Some(path) = &source.path else {
            continue;
        };
        let conflict = |other: String| Error::PathConflict {
            source_name: name.clone(),
            path: path.clone(),
            other,
        };
        if health::is_reserved(path) {
            return Err(conflict("ingress's health endpoints".to_owned()));
        }
        if let Some(other) = table.get(path) {
            return Err(conflict(format!("source {}", other.name)));
        }
        if let Some(handshake) = &source.handshake {
            handshake::check(handshake).map_err(|cause| Error::HandshakeSetup {
                source_name: name.clone(),
                cause,
            })?;
        }
        if let Some(signature) = &source.signature {
            verify::check(signature).map_err(|cause| Error::SignatureSetup {
                source_name: name.clone(),
                cause,
            })?;
        }
        access::check(source).map_err(|cause| Error::AccessSetup {
            source_name: name.clone(),
            cause,
        })?;
        let mut methods = Vec::new();
        for m in &source.methods {
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if !methods.contains(&method) => methods.push(method),
                Ok(_) => {}
                Err(_) => tracing::warn!(source = %name, method = %m, "ignoring invalid method"),
            }
        }
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        table.insert(
            path.clone(),
            SourceEntry {
                name: name.clone(),
                methods,
                allow,
                auth: Authenticator::new(&source.auth),
                client: ClientFilter::new(source).map_err(|cause| Error::AccessSetup {
                    source_name: name.clone(),
                    cause,
                })?,
                limits: Limits::new(source),
                max_body_bytes: source.max_body_bytes,
                dedup_key: source.dedup_expr(),
                dedup_window: source.effective_dedup_window(),
                signature: source.signature.clone(),
                handshake: source.handshake.clone(),
                reply: source.reply.clone(),
            },
        );
    }
    Ok(table)
}

/// Shared state of the webhook handler.
pub(crate) struct App {
    pub sources: HashMap<String, SourceEntry>,
    /// For the reply subscriptions of `sync` sources.
    pub nats: async_nats::Client,
    /// Request counts and store latencies.
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    /// Long-window dedup of event ids.
    pub dedup: Arc<Dedup>,
    pub topology: Topology,
    pub retry_after_secs: u64,
}

/// The whole router: health endpoints and gRPC health first, every other path to a source.
pub(crate) fn router<S>(app: Arc<App>, readiness: Arc<Readiness>, grpc_health: S) -> Router
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let metrics = app.metrics.clone();
    let router = Router::new()
        .route(health::HEALTHZ, get(health::healthz))
        .route(
            health::READYZ,
            get(move || async move { health::readyz(&readiness).await }),
        )
        .route(METRICS_PATH, get(move || async move { metrics.response() }));
    health::with_grpc(router, grpc_health)
        .fallback(webhook)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::framing::enforce,
        ))
        .with_state(app)
}

async fn webhook(State(app): State<Arc<App>>, request: Request) -> Response {
    // Borrowed from the source table, not the request, which `accept` takes.
    let source = app
        .sources
        .get(request.uri().path())
        .map_or("", |s| s.name.as_str());
    // The sender's trace, when it sent a valid `traceparent`, else a new one.
    let span = tracing::info_span!(
        "accept",
        source,
        event_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    hookyard_core::trace::adopt(&span, hookyard_core::trace::from_sender(request.headers()));
    let (response, outcome) = match accept(&app, request).instrument(span.clone()).await {
        Ok((response, outcome)) => (response, outcome),
        Err(error) => {
            let outcome = error.kind();
            (error.into_response(), outcome)
        }
    };
    app.metrics.request(source, outcome);
    span.record("http.response.status_code", response.status().as_u16());
    span.record("outcome", outcome);
    response
}

/// What became of an answered request, for the metrics.
type Outcome = &'static str;

async fn accept(app: &App, request: Request) -> Result<(Response, Outcome), Error> {
    let received_at = Instant::now();
    let received_at_ms = now_ms();
    let (parts, body) = request.into_parts();
    let source = app.sources.get(parts.uri.path()).ok_or(Error::NotFound)?;
    if let Some(answer) = check_head(source, &parts)? {
        return Ok((answer, "handshake"));
    }
    let body = read_body(source, &parts, body).await?;
    if let Some(answer) = handshake::after_verify(source, &body)? {
        return Ok((answer, "handshake"));
    }
    let envelope = event::envelope(
        source,
        Received {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body,
            received_at_ms,
        },
    )?;
    store(app, source, envelope, received_at).await
}

/// The checks made before a byte of the body is read, in the order of the module docs; an
/// answer when the request is a query-string handshake.
fn check_head(
    source: &SourceEntry,
    parts: &http::request::Parts,
) -> Result<Option<Response>, Error> {
    // A query-string handshake may come with a method the source does not take otherwise.
    let query_handshake = handshake::query(source, parts);
    if query_handshake.is_none() && !source.methods.contains(&parts.method) {
        return Err(Error::MethodNotAllowed {
            allow: source.allow.clone(),
        });
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    if !source.client.allows(peer, &parts.headers) {
        tracing::warn!(?peer, "request refused: address not allowed");
        return Err(Error::Forbidden);
    }
    source.limits.check_rate().inspect_err(|_| {
        tracing::info!("request refused: rate limit");
    })?;
    if let Some(outcome) = query_handshake {
        return handshake::answer(source, outcome).map(Some);
    }
    if let Err(reason) = source.auth.check(&parts.headers, parts.uri.query()) {
        tracing::warn!(%reason, "request refused: unauthorized");
        return Err(Error::Unauthorized(reason));
    }
    source.limits.check_content_type(&parts.headers)?;
    body::check_declared(&parts.headers, source.max_body_bytes)
        .map_err(|e| log_too_large(source, e))?;
    Ok(None)
}

/// Reads the body within the source's limits, checks its signature over the exact bytes read,
/// and bounds its nesting.
async fn read_body(
    source: &SourceEntry,
    parts: &http::request::Parts,
    body: axum::body::Body,
) -> Result<bytes::Bytes, Error> {
    let body = source
        .limits
        .read_body(body, source.max_body_bytes)
        .await
        .map_err(|e| log_too_large(source, e))?;
    if let Some(signature) = &source.signature {
        // The exact bytes read, before anything could re-encode them.
        verify::verify(signature, &parts.headers, &body, SystemTime::now()).map_err(|reason| {
            tracing::warn!(kind = reason.kind(), %reason, "request refused: bad signature");
            Error::Signature(reason)
        })?;
    }
    // Refused before any JSON reader (a handshake's, a dedup key's, the router's) can recurse.
    hookyard_core::json::check_body(&body).map_err(|e| {
        tracing::info!("request refused: body nested too deeply");
        Error::from(e)
    })?;
    Ok(body)
}

/// Stores the event unless it is a repeat within the dedup window, and answers: the configured
/// reply, or for a `sync` source the handler's reply when it comes within the deadline.
async fn store(
    app: &App,
    source: &SourceEntry,
    envelope: Envelope,
    received_at: Instant,
) -> Result<(Response, Outcome), Error> {
    tracing::Span::current().record("event_id", envelope.id.as_str());
    let unavailable = |cause| {
        tracing::warn!(event_id = %envelope.id, error = %cause, "event not stored, answering 503");
        Error::Unavailable {
            retry_after_secs: app.retry_after_secs,
            cause,
        }
    };
    let recorded = dedup_record(app, source, &envelope)
        .await
        .map_err(unavailable)?;
    if recorded == Some(Recorded::Within) {
        tracing::info!(event_id = %envelope.id, "duplicate delivery absorbed");
        return Ok((
            reply::configured(&source.reply, &envelope.id, &source.name),
            "duplicate",
        ));
    }
    // Subscribed before the publish, so a handler's reply cannot come before the subscription.
    let mut reply_subscription = match source.reply.mode {
        ReplyMode::Async => None,
        ReplyMode::Sync => Some(
            app.nats
                .subscribe(app.topology.reply_subject(&envelope.id))
                .await
                // Fails only when the client is closed, which is the publish's failure too.
                .map_err(|_| unavailable(crate::publish::PublishError::Disconnected))?,
        ),
    };
    let payload = envelope.encode_to_vec();
    check_payload(app, &envelope, payload.len())?;
    let ack = publish(app, source, &envelope.id, payload)
        .await
        .map_err(unavailable)?;
    app.metrics
        .stored(&source.name, received_at.elapsed().as_secs_f64());
    tracing::info!(
        event_id = %envelope.id,
        stream_seq = ack.sequence,
        duplicate = ack.duplicate,
        "event accepted"
    );
    if recorded.is_some() {
        app.dedup
            .remember(&source.name, &envelope.id, envelope.received_at_ms);
    }
    if let Some(subscription) = &mut reply_subscription {
        let left = source.reply.deadline.saturating_sub(received_at.elapsed());
        if let Some(answer) = reply::wait(subscription, left).await {
            tracing::info!(event_id = %envelope.id, status = answer.status().as_u16(), "answered with the handler's reply");
            return Ok((answer, "replied"));
        }
        tracing::info!(event_id = %envelope.id, "no handler reply within the deadline, answering with the configured reply");
    }
    Ok((
        reply::configured(&source.reply, &envelope.id, &source.name),
        "accepted",
    ))
}

/// What the dedup bucket holds for the event, or `None` when the source's window is off.
async fn dedup_record(
    app: &App,
    source: &SourceEntry,
    envelope: &Envelope,
) -> Result<Option<Recorded>, crate::publish::PublishError> {
    let Some(window) = source.dedup_window else {
        return Ok(None);
    };
    app.dedup
        .lookup(&envelope.id, window, envelope.received_at_ms)
        .await
        .map(Some)
}

/// Stores the event through the group commit within its `store` span, whose trace context the
/// stored message carries for the router.
async fn publish(
    app: &App,
    source: &SourceEntry,
    event_id: &str,
    payload: Vec<u8>,
) -> Result<async_nats::jetstream::publish::PublishAck, crate::publish::PublishError> {
    let stored = tracing::info_span!(
        "store",
        stream_seq = tracing::field::Empty,
        duplicate = tracing::field::Empty
    );
    let mut trace = async_nats::HeaderMap::new();
    hookyard_core::trace::to_nats(&stored, &mut trace);
    let ack = app
        .publisher
        .publish(
            app.topology.in_subject(&source.name),
            event_id,
            &source.name,
            payload.into(),
            trace,
        )
        .instrument(stored.clone())
        .await?;
    stored.record("stream_seq", ack.sequence);
    stored.record("duplicate", ack.duplicate);
    Ok(ack)
}

/// NATS refuses a message over the server's `max_payload` whatever happens, so a retry could
/// never succeed: that is the sender's body being too large (413), not an outage (503).
/// Until the server's limit is known (not connected yet) the check is left to the publish,
/// which then fails with a 503.
fn check_payload(app: &App, envelope: &Envelope, payload: usize) -> Result<(), Error> {
    if app.nats.connection_state() != async_nats::connection::State::Connected {
        return Ok(());
    }
    // An atomic read: `server_info()` would clone the server's whole INFO per request.
    let max_payload = app.nats.max_payload();
    if max_payload > 0 && payload + NATS_HEADER_ALLOWANCE > max_payload {
        tracing::warn!(event_id = %envelope.id, bytes = payload, max_payload, "event larger than the broker's max_payload");
        let overhead = payload - envelope.body.len() + NATS_HEADER_ALLOWANCE;
        return Err(Error::BodyTooLarge {
            limit: u64::try_from(max_payload.saturating_sub(overhead)).unwrap_or(u64::MAX),
        });
    }
    Ok(())
}

fn log_too_large(source: &SourceEntry, error: Error) -> Error {
    tracing::info!(
        limit = source.max_body_bytes,
        kind = error.kind(),
        "request body refused"
    );
    error
}
