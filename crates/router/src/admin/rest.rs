//! The admin API as JSON over HTTP, for scripts (`curl`, `jq`): the same messages as the gRPC
//! service in the proto3 JSON mapping (field names as in the `.proto`, every field present,
//! 64-bit integers as strings, bytes as base64). Routes, all under `/v1`:
//!
//! | method and path | RPC | input |
//! |---|---|---|
//! | `GET /v1/events` | `ListEvents` | query: `source`, `type`, `since_ms`, `until_ms`, `page_size`, `page_token` |
//! | `GET /v1/events/{id}` | `GetEvent` | |
//! | `GET /v1/dead-letters` | `ListDeadLetters` | query: `handler`, `reason`, `since_ms`, `until_ms`, `page_size`, `page_token` |
//! | `GET /v1/dead-letters/{sequence}` | `GetDeadLetter` | |
//! | `POST /v1/dead-letters/purge` | `PurgeDeadLetters` | body: `PurgeDeadLettersRequest` |
//! | `POST /v1/replays` | `Replay` | body: `ReplayRequest`; answers the `ReplayRecord` when done |
//! | `GET /v1/replays` | `ListReplays` | query: `page_size`, `page_token` |
//! | `GET /v1/tail` | `Tail` | query: `source`, `type`; answers one JSON `EventSummary` per line |
//! | `GET /v1/handlers` | `ListHandlers` | |
//! | `POST /v1/handlers/{name}/pause` | `PauseHandler` | body (optional): `{"for_ms": "60000"}` |
//! | `POST /v1/handlers/{name}/resume` | `ResumeHandler` | |
//! | `GET /v1/audit` | `ListAudit` | query: `event_id`, `connection`, `since_ms`, `until_ms`, `page_size`, `page_token` |
//!
//! Failures answer `{"code": "<grpc code>", "message": "…"}` with the status of [`Error::status`];
//! an unknown query parameter or a malformed body is a 400. Query parameters other than
//! `ListEvents`' are the request message's fields, read by its proto3 JSON deserializer.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt as _;
use hookyard_proto::admin::v1::{
    DeadLetterSelector, EventFilter, ListAuditRequest, ListDeadLettersRequest,
    ListDeadLettersResponse, ListEventsResponse, ListHandlersResponse, ListReplaysRequest,
    ListReplaysResponse, PauseHandlerRequest, PauseHandlerResponse, PurgeDeadLettersRequest,
    PurgeDeadLettersResponse, ReplayRequest, ResumeHandlerResponse, TailRequest,
};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::{Context, Error, audit, dead, events, handlers, replay, service};

type Ctx = State<Arc<Context>>;

/// The JSON routes.
pub(crate) fn routes(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/purge", post(purge))
        .route("/v1/dead-letters/{sequence}", get(get_dead_letter))
        .route("/v1/replays", post(start_replay).get(list_replays))
        .route("/v1/tail", get(tail))
        .route("/v1/handlers", get(list_handlers))
        .route("/v1/handlers/{name}/pause", post(pause))
        .route("/v1/handlers/{name}/resume", post(resume))
        .route("/v1/audit", get(list_audit))
        .with_state(ctx)
}

/// A failure as JSON.
struct Failure(StatusCode, String, String);

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let code = hookyard_core::metrics::code_label(error.code());
        Self(error.status(), code, crate::report(&error))
    }
}

impl Failure {
    fn bad_request(message: String) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            "invalid_argument".to_owned(),
            message,
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.1, "message": self.2 });
        (self.0, Json(body)).into_response()
    }
}

type Answer<T> = Result<Json<T>, Failure>;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    q.map(|Query(q)| q)
        .map_err(|e| Failure::bad_request(e.body_text()))
}

/// A JSON body of a proto message; an empty body is the default message.
fn body<T: Default + serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Failure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| Failure::bad_request(format!("invalid body: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    source: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    since_ms: i64,
    #[serde(default)]
    until_ms: i64,
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

async fn list_events(
    State(ctx): Ctx,
    q: Result<Query<Page>, QueryRejection>,
) -> Answer<ListEventsResponse> {
    let q = query(q)?;
    let filter = EventFilter {
        source: q.source,
        r#type: q.event_type,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    let (events, next_page_token, scanned) =
        events::list(&ctx, &filter, q.page_size, &q.page_token).await?;
    Ok(Json(ListEventsResponse {
        events,
        next_page_token,
        scanned,
    }))
}

async fn get_event(
    State(ctx): Ctx,
    Path(id): Path<String>,
) -> Answer<hookyard_proto::admin::v1::GetEventResponse> {
    Ok(Json(service::get_event(&ctx, &id).await?))
}

async fn list_dead_letters(
    State(ctx): Ctx,
    q: Result<Query<ListDeadLettersRequest>, QueryRejection>,
) -> Answer<ListDeadLettersResponse> {
    let (dead_letters, next_page_token) = dead::list(&ctx, &query(q)?).await?;
    Ok(Json(ListDeadLettersResponse {
        dead_letters,
        next_page_token,
    }))
}

async fn get_dead_letter(
    State(ctx): Ctx,
    Path(sequence): Path<String>,
) -> Answer<hookyard_proto::admin::v1::GetDeadLetterResponse> {
    let sequence = sequence.parse().map_err(|_| {
        Failure::bad_request("a dead letter's id is its sequence number".to_owned())
    })?;
    let (dead_letter, event) = dead::get(&ctx, sequence).await?;
    Ok(Json(hookyard_proto::admin::v1::GetDeadLetterResponse {
        dead_letter: Some(dead_letter),
        event: Some(event),
    }))
}

async fn purge(State(ctx): Ctx, bytes: Bytes) -> Answer<PurgeDeadLettersResponse> {
    let request: PurgeDeadLettersRequest = body(&bytes)?;
    let selector: DeadLetterSelector = request.selector.unwrap_or_default();
    let purged = dead::purge(&ctx, &selector, request.dry_run).await?;
    Ok(Json(PurgeDeadLettersResponse { purged }))
}

async fn start_replay(State(ctx): Ctx, bytes: Bytes) -> Result<Response, Failure> {
    let request: ReplayRequest = body(&bytes)?;
    if let Some(record) = replay::to_end(ctx, request).await? {
        return Ok(Json(record).into_response());
    }
    Err(Failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable".to_owned(),
        "the replay ended without a record".to_owned(),
    ))
}

async fn list_replays(
    State(ctx): Ctx,
    q: Result<Query<ListReplaysRequest>, QueryRejection>,
) -> Answer<ListReplaysResponse> {
    let (replays, next_page_token) = replay::list(&ctx, &query(q)?).await?;
    Ok(Json(ListReplaysResponse {
        replays,
        next_page_token,
    }))
}

async fn tail(
    State(ctx): Ctx,
    q: Result<Query<TailRequest>, QueryRejection>,
) -> Result<Response, Failure> {
    let events = service::tail(ctx, query(q)?);
    let lines = ReceiverStream::new(events).map(|event| {
        let value = match event {
            Ok(event) => serde_json::to_value(event),
            Err(error) => Ok(serde_json::json!({ "error": crate::report(&error) })),
        };
        value.and_then(|v| serde_json::to_vec(&v)).map(|mut line| {
            line.push(b'\n');
            Bytes::from(line)
        })
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn list_handlers(State(ctx): Ctx) -> Answer<ListHandlersResponse> {
    let handlers = handlers::list(&ctx).await?;
    Ok(Json(ListHandlersResponse { handlers }))
}

async fn pause(
    State(ctx): Ctx,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer<PauseHandlerResponse> {
    let request: PauseHandlerRequest = body(&bytes)?;
    let duration = (request.for_ms > 0).then(|| Duration::from_millis(request.for_ms));
    let handler = handlers::pause(&ctx, &name, duration).await?;
    Ok(Json(PauseHandlerResponse {
        handler: Some(handler),
    }))
}

async fn resume(State(ctx): Ctx, Path(name): Path<String>) -> Answer<ResumeHandlerResponse> {
    let handler = handlers::resume(&ctx, &name).await?;
    Ok(Json(ResumeHandlerResponse {
        handler: Some(handler),
    }))
}

async fn list_audit(
    State(ctx): Ctx,
    q: Result<Query<ListAuditRequest>, QueryRejection>,
) -> Answer<hookyard_proto::admin::v1::ListAuditResponse> {
    let (records, next_page_token) = audit::list(&ctx, &query(q)?).await?;
    Ok(Json(hookyard_proto::admin::v1::ListAuditResponse {
        records,
        next_page_token,
    }))
}
