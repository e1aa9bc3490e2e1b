//! Partner calls: every request that is not the token endpoint nor under `/_demo/`.
//!
//! Each call is authenticated, recorded whatever its outcome, logged on one line, and answered
//! 201 (`POST`) or 200, 401 without valid credentials, 413 past [`BODY_LIMIT`], or the status
//! named by `X-Demo-Status` to demonstrate retries and dead letters.

use std::time::Instant;

use axum::{
    Json,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::{
    Demo, Shared,
    credentials::{Presented, secret_eq},
    journal::{AuthKind, Received, body_value},
    lock,
};

/// Largest request body a partner call may carry.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Request header that makes an accepted call answer the status it names.
static DEMO_STATUS: HeaderName = HeaderName::from_static("x-demo-status");
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// How a call is answered, decided before it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted(StatusCode),
    Unauthorized,
    TooLarge,
    UnreadableBody,
    /// `X-Demo-Status` named this status.
    Injected(StatusCode),
    /// `X-Demo-Status` was not a status between 200 and 599.
    BadInjection,
}

impl Outcome {
    fn status(self) -> StatusCode {
        match self {
            Self::Accepted(status) | Self::Injected(status) => status,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody | Self::BadInjection => StatusCode::BAD_REQUEST,
        }
    }

    fn respond(self, seq: u64) -> Response {
        let status = self.status();
        let body = match self {
            Self::Accepted(_) => json!({ "received": seq }),
            Self::Injected(status) if status.is_success() => json!({ "received": seq }),
            Self::Injected(_) => json!({ "error": "injected", "seq": seq }),
            Self::Unauthorized => json!({ "error": "unauthorized" }),
            Self::TooLarge => json!({ "error": "payload_too_large" }),
            Self::UnreadableBody => json!({ "error": "unreadable_body" }),
            Self::BadInjection => json!({ "error": "invalid_demo_status" }),
        };
        // These statuses must not carry a body (RFC 9110 §15.3.5, §15.3.6, §15.4.5).
        if matches!(status.as_u16(), 204 | 205 | 304) {
            return status.into_response();
        }
        let mut response = (status, Json(body)).into_response();
        if self == Self::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hookyard-demo\""),
            );
        }
        response
    }
}

pub async fn call(State(demo): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let auth = authenticate(&demo, &parts.headers, Instant::now());
    let (body, read) = read_body(body).await;
    let outcome = match read {
        Err(outcome) => outcome,
        Ok(()) if !auth.is_accepted() => Outcome::Unauthorized,
        Ok(()) => match parts.headers.get(&DEMO_STATUS) {
            Some(value) => injected(value),
            None if parts.method == Method::POST => Outcome::Accepted(StatusCode::CREATED),
            None => Outcome::Accepted(StatusCode::OK),
        },
    };
    let status = outcome.status().as_u16();
    let idempotency_key = parts
        .headers
        .get(&IDEMPOTENCY_KEY)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        idempotency_key: idempotency_key.clone(),
        auth,
        body,
    };
    let seq = lock(&demo.journal).record(received, status);
    tracing::info!(
        seq,
        method = %parts.method,
        path = parts.uri.path(),
        idempotency_key = idempotency_key.as_deref(),
        auth = auth.as_str(),
        status,
        "partner call received"
    );
    outcome.respond(seq)
}

fn authenticate(demo: &Demo, headers: &HeaderMap, now: Instant) -> AuthKind {
    match Presented::from_headers(headers) {
        Presented::None => AuthKind::None,
        Presented::Bearer(token) if lock(&demo.tokens).is_valid(&token, now) => AuthKind::Bearer,
        Presented::Basic { user, password } => {
            // Both comparisons always run, so timing does not tell which one failed.
            let user_matches = secret_eq(&user, &demo.settings.basic_user);
            let password_matches = secret_eq(&password, &demo.settings.basic_password);
            if user_matches & password_matches {
                AuthKind::Basic
            } else {
                AuthKind::Invalid
            }
        }
        Presented::Bearer(_) | Presented::Malformed => AuthKind::Invalid,
    }
}

/// Reads the body up to [`BODY_LIMIT`]; on failure the call is recorded with a `null` body.
async fn read_body(body: Body) -> (serde_json::Value, Result<(), Outcome>) {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => (body_value(&collected.to_bytes()), Ok(())),
        Err(error) if error.is::<LengthLimitError>() => {
            (serde_json::Value::Null, Err(Outcome::TooLarge))
        }
        Err(_) => (serde_json::Value::Null, Err(Outcome::UnreadableBody)),
    }
}

fn injected(value: &HeaderValue) -> Outcome {
    value
        .to_str()
        .ok()
        .and_then(|value| value.trim().parse::<u16>().ok())
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .map_or(Outcome::BadInjection, Outcome::Injected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_status_must_be_a_final_status() {
        let parse = |value: &'static str| injected(&HeaderValue::from_static(value));
        assert_eq!(
            parse("503"),
            Outcome::Injected(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            parse(" 429 "),
            Outcome::Injected(StatusCode::TOO_MANY_REQUESTS)
        );
        for bad in ["100", "600", "abc", ""] {
            assert_eq!(parse(bad), Outcome::BadInjection, "{bad}");
        }
    }

    #[test]
    fn refused_calls_answer_without_echoing_anything_secret() {
        let response = Outcome::Unauthorized.respond(7);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            Outcome::Injected(StatusCode::NO_CONTENT)
                .respond(1)
                .status(),
            204
        );
    }
}
