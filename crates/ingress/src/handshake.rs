//! Handshakes: verification requests that ingress answers itself, never storing them and never
//! letting them reach a handler.
//!
//! Two moments, following where the sender puts the handshake (see
//! [`Handshake`](hookyard_core::config::Handshake) for the kinds):
//! - `query`: from the query string (`websub`, `microsoft_graph`, `echo` with `query`).
//!   Answered for `GET` and `POST` whatever the source's methods (no 405), after the source's
//!   address and rate checks but before inbound auth, without reading the body. These senders
//!   cannot sign or authenticate the request: the WebSub verify token is the proof, Microsoft
//!   Graph's validation has none, and the answer is only the value that was sent.
//! - `after_verify`: from the JSON body (`slack`, `zoom`, `echo` with `json_pointer`).
//!   Answered after inbound auth and signature verification passed (Slack and Zoom sign their
//!   validation requests), before publishing. Bodies that are not handshakes are normal events.
//!
//! Values echoed back are at most [`MAX_CHALLENGE_BYTES`], non-empty and free of control
//! characters (400 otherwise). Tokens are compared in constant time and never logged.

use std::borrow::Cow;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use hookyard_core::config::{EchoHandshake, Handshake};
use http::{Method, StatusCode, header, request::Parts};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{Error, routes::SourceEntry};

/// Longest challenge echoed back, in bytes.
pub const MAX_CHALLENGE_BYTES: usize = 1024;

/// Why a handshake request was refused. Never holds a token or challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The WebSub verify token is missing or is not the configured one.
    #[error("verify token missing or wrong")]
    Forbidden,
    /// The value to echo is missing, empty or not a string.
    #[error("challenge missing")]
    Missing,
    /// The value to echo is longer than [`MAX_CHALLENGE_BYTES`].
    #[error("challenge longer than {MAX_CHALLENGE_BYTES} bytes")]
    TooLong,
    /// The value to echo holds control characters.
    #[error("challenge holds control characters")]
    ControlCharacter,
    /// A handshake query parameter appears more than once.
    #[error("handshake parameter repeated")]
    Repeated,
}

impl HandshakeError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Missing | Self::TooLong | Self::ControlCharacter | Self::Repeated => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// Short machine-readable kind, the `error` field of the answer.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Forbidden => "handshake_forbidden",
            Self::Missing => "handshake_challenge_missing",
            Self::TooLong => "handshake_challenge_too_long",
            Self::ControlCharacter => "handshake_challenge_invalid",
            Self::Repeated => "handshake_parameter_repeated",
        }
    }
}

/// A handshake configuration ingress cannot answer with, found at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The handshake's secret is empty (for instance never resolved): an empty verify token
    /// would match a request without one, an empty HMAC key is known to everyone.
    #[error("handshake {0} is empty")]
    EmptySecret(&'static str),
}

/// Checks once, at start, that the handshake's secret, if any, has a value.
pub fn check(handshake: &Handshake) -> Result<(), SetupError> {
    match handshake.secret() {
        Some((field, secret)) if secret.expose().is_empty() => Err(SetupError::EmptySecret(field)),
        _ => Ok(()),
    }
}

/// What a handshake is answered with (status 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `text/plain` body.
    Text(String),
    /// JSON body.
    Json(Value),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Self::Text(text) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text,
            )
                .into_response(),
            Self::Json(value) => (StatusCode::OK, Json(value)).into_response(),
        }
    }
}

/// The outcome of a query-string handshake, if the request is one (see the module docs); the
/// caller answers it with `answer` once the source's address and rate checks passed.
pub(crate) fn query(source: &SourceEntry, parts: &Parts) -> Option<Result<Answer, HandshakeError>> {
    let handshake = source.handshake.as_ref()?;
    from_query(handshake, &parts.method, parts.uri.query()).transpose()
}

/// The response to a query-string handshake found by `query`.
pub(crate) fn answer(
    source: &SourceEntry,
    outcome: Result<Answer, HandshakeError>,
) -> Result<Response, Error> {
    let kind = source.handshake.as_ref().map_or("", Handshake::kind);
    respond(&source.name, kind, outcome)
}

/// The answer to a body handshake, if the verified body is one; see the module docs.
pub(crate) fn after_verify(source: &SourceEntry, body: &[u8]) -> Result<Option<Response>, Error> {
    let Some(handshake) = &source.handshake else {
        return Ok(None);
    };
    from_body(handshake, body)
        .transpose()
        .map(|outcome| respond(&source.name, handshake.kind(), outcome))
        .transpose()
}

fn respond(
    source: &str,
    kind: &'static str,
    outcome: Result<Answer, HandshakeError>,
) -> Result<Response, Error> {
    match outcome {
        Ok(answer) => {
            tracing::info!(source, kind, "handshake answered");
            Ok(answer.into_response())
        }
        Err(reason) => {
            tracing::warn!(source, kind, error = reason.kind(), "handshake refused");
            Err(Error::Handshake(reason))
        }
    }
}

/// Answers a handshake carried in the query string; `None` when the request is not one.
pub fn from_query(
    handshake: &Handshake,
    method: &Method,
    query: Option<&str>,
) -> Result<Option<Answer>, HandshakeError> {
    if !handshake.reads_query() || !(method == Method::GET || method == Method::POST) {
        return Ok(None);
    }
    let query = query.unwrap_or("");
    match handshake {
        Handshake::Websub { verify_token } => {
            if *method != Method::GET || param(query, "hub.mode")?.as_deref() != Some("subscribe") {
                return Ok(None);
            }
            let given = param(query, "hub.verify_token")?.ok_or(HandshakeError::Forbidden)?;
            let expected = verify_token.expose().as_bytes();
            // An empty configured token never matches (start-up refuses it anyway).
            if expected.is_empty() || !bool::from(expected.ct_eq(given.as_bytes())) {
                return Err(HandshakeError::Forbidden);
            }
            let challenge = param(query, "hub.challenge")?.ok_or(HandshakeError::Missing)?;
            Ok(Some(Answer::Text(challenge_text(&challenge)?)))
        }
        Handshake::MicrosoftGraph {} => text_param(query, "validationToken"),
        Handshake::Echo(EchoHandshake {
            query: Some(name), ..
        }) => text_param(query, name),
        Handshake::Echo(_) | Handshake::Slack {} | Handshake::Zoom { .. } => Ok(None),
    }
}

/// Answers a handshake carried in a JSON body; `None` when the body is not one (including
/// when it is not JSON).
pub fn from_body(handshake: &Handshake, body: &[u8]) -> Result<Option<Answer>, HandshakeError> {
    match handshake {
        Handshake::Slack {} => {
            // Cheap test first: most bodies are events, not worth parsing here.
            let Some(value) = json_containing(body, b"url_verification") else {
                return Ok(None);
            };
            if value.pointer("/type").and_then(Value::as_str) != Some("url_verification") {
                return Ok(None);
            }
            let challenge = challenge_at(&value, "/challenge")?;
            Ok(Some(Answer::Json(
                serde_json::json!({ "challenge": challenge }),
            )))
        }
        Handshake::Zoom { secret_token } => {
            let Some(value) = json_containing(body, b"endpoint.url_validation") else {
                return Ok(None);
            };
            if value.pointer("/event").and_then(Value::as_str) != Some("endpoint.url_validation") {
                return Ok(None);
            }
            let plain = challenge_at(&value, "/payload/plainToken")?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret_token.expose().as_bytes())
                .map_err(|_| HandshakeError::Forbidden)?;
            mac.update(plain.as_bytes());
            let encrypted = hex::encode(mac.finalize().into_bytes());
            Ok(Some(Answer::Json(serde_json::json!({
                "plainToken": plain,
                "encryptedToken": encrypted,
            }))))
        }
        Handshake::Echo(EchoHandshake {
            json_pointer: Some(pointer),
            when,
            ..
        }) => {
            let Ok(value) = serde_json::from_slice::<Value>(body) else {
                return Ok(None);
            };
            let is_handshake = match when {
                Some(when) => {
                    value.pointer(&when.pointer).and_then(Value::as_str)
                        == Some(when.equals.as_str())
                }
                // Without a condition, a string at the pointer is what makes a handshake.
                None => value.pointer(pointer).is_some_and(Value::is_string),
            };
            if !is_handshake {
                return Ok(None);
            }
            let challenge = challenge_at(&value, pointer)?;
            let mut answer = serde_json::Map::new();
            answer.insert(last_token(pointer), Value::String(challenge));
            Ok(Some(Answer::Json(Value::Object(answer))))
        }
        Handshake::Echo(_) | Handshake::Websub { .. } | Handshake::MicrosoftGraph {} => Ok(None),
    }
}

/// The body as JSON if it contains `marker`, else `None` (not a handshake).
fn json_containing(body: &[u8], marker: &[u8]) -> Option<Value> {
    body.windows(marker.len())
        .any(|w| w == marker)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}

fn challenge_at(value: &Value, pointer: &str) -> Result<String, HandshakeError> {
    let text = value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or(HandshakeError::Missing)?;
    challenge_text(text)
}

/// A query parameter echoed as text, if present.
fn text_param(query: &str, name: &str) -> Result<Option<Answer>, HandshakeError> {
    match param(query, name)? {
        Some(value) => Ok(Some(Answer::Text(challenge_text(&value)?))),
        None => Ok(None),
    }
}

/// The URL-decoded value of query parameter `name`; a repeated parameter is refused rather
/// than picking one copy.
fn param<'q>(query: &'q str, name: &str) -> Result<Option<Cow<'q, str>>, HandshakeError> {
    let mut found = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == name {
            if found.is_some() {
                return Err(HandshakeError::Repeated);
            }
            found = Some(value);
        }
    }
    Ok(found)
}

fn challenge_text(value: &str) -> Result<String, HandshakeError> {
    if value.is_empty() {
        return Err(HandshakeError::Missing);
    }
    if value.len() > MAX_CHALLENGE_BYTES {
        return Err(HandshakeError::TooLong);
    }
    if value.chars().any(char::is_control) {
        return Err(HandshakeError::ControlCharacter);
    }
    Ok(value.to_owned())
}

/// The last reference token of a JSON pointer, unescaped (RFC 6901 §4).
fn last_token(pointer: &str) -> String {
    let token = pointer.rsplit('/').next().unwrap_or(pointer);
    token.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests;
