//! The crate's one error type and its one mapping to HTTP status codes.
//!
//! Start-up errors ([`Error::PathConflict`], [`Error::Serve`]) come out of [`crate::run`];
//! request errors become the answer to the sender through [`IntoResponse`]. Messages never
//! contain credentials, header values or body bytes.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};

use crate::{
    auth::AuthError,
    handshake::{self, HandshakeError},
    publish::PublishError,
    verify::{SetupError, VerifyError},
};

/// Everything that can go wrong in ingress.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A source is configured on a path that is already served: by ingress itself (`/healthz`,
    /// `/readyz`, gRPC health) or by another source.
    #[error("source {source_name} listens on {path}, which is already served by {other}")]
    PathConflict {
        /// Name of the source.
        source_name: String,
        /// The configured path.
        path: String,
        /// What already serves the path.
        other: String,
    },
    /// A source's signature settings cannot be used (an empty secret, a key that is not one).
    #[error("source {source_name} has unusable signature settings")]
    SignatureSetup {
        /// Name of the source.
        source_name: String,
        /// What is wrong (names the secret's position, never its value).
        #[source]
        cause: SetupError,
    },
    /// A source's handshake settings cannot be used (an empty secret).
    #[error("source {source_name} has unusable handshake settings")]
    HandshakeSetup {
        /// Name of the source.
        source_name: String,
        /// What is wrong (names the setting, never its value).
        #[source]
        cause: handshake::SetupError,
    },
    /// A source's address, auth or rate settings cannot be used (a bad CIDR block, an empty
    /// key or password, a zero rate).
    #[error("source {source_name} has unusable access settings")]
    AccessSetup {
        /// Name of the source.
        source_name: String,
        /// What is wrong (names the setting, never a secret).
        #[source]
        cause: crate::access::SetupError,
    },
    /// The integration file has polling sources but ingress has no egress to call them with.
    #[error(
        "sources {sources} poll partner APIs through egress, but no egress endpoint is set (HOOKYARD_EGRESS_ENDPOINT)"
    )]
    PollWithoutEgress {
        /// The polling sources, comma-separated.
        sources: String,
    },
    /// The egress endpoint of the polling sources is not a valid URI.
    #[error("invalid egress endpoint {endpoint:?}")]
    EgressEndpoint {
        /// The endpoint given.
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The HTTP server failed.
    #[error("failed to serve http")]
    Serve(#[source] std::io::Error),
    /// The request breaks an HTTP/1 framing rule (`Host`, `Transfer-Encoding`).
    #[error("bad request: {0}")]
    Framing(#[source] crate::framing::FramingError),
    /// No source listens on the request's path.
    #[error("no source listens on this path")]
    NotFound,
    /// The source does not accept the request's method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value of the `Allow` header: the source's methods, comma-separated.
        allow: String,
    },
    /// The sender did not prove who it is.
    #[error("unauthorized: {0}")]
    Unauthorized(#[source] AuthError),
    /// The request's signature did not verify.
    #[error("bad signature: {0}")]
    Signature(#[source] VerifyError),
    /// A handshake request was refused (wrong verify token, unusable challenge).
    #[error("handshake refused: {0}")]
    Handshake(#[source] HandshakeError),
    /// The body is larger than the source accepts.
    #[error("body larger than {limit} bytes")]
    BodyTooLarge {
        /// The source's `max_body_bytes`.
        limit: u64,
    },
    /// The body could not be read (the sender went away or sent a broken encoding).
    #[error("failed to read the request body")]
    BodyRead(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body nests deeper than any JSON reader here is allowed to go.
    #[error(transparent)]
    BodyTooDeep(#[from] hookyard_core::json::TooDeep),
    /// The header carrying the sender's delivery id is not UTF-8; read lossily, two different
    /// ids could become one and the second delivery would be dropped as a duplicate.
    #[error("the {header} header, this source's delivery id, is not valid UTF-8")]
    DedupKeyNotUtf8 {
        /// The header's name as configured.
        header: String,
    },
    /// The client address is not in the source's `allow_ips`.
    #[error("client address not allowed")]
    Forbidden,
    /// The source's rate limit is spent.
    #[error("too many requests")]
    RateLimited {
        /// Seconds until a request would be accepted (at least 1).
        retry_after_secs: u64,
    },
    /// The `Content-Type` is not one the source accepts.
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// The body did not arrive within the source's `read_timeout`.
    #[error("body not received within {timeout:?}")]
    BodyTimeout {
        /// The source's `read_timeout`.
        timeout: std::time::Duration,
    },
    /// The event was not durably stored, so it must not be acknowledged.
    #[error("event store unavailable")]
    Unavailable {
        /// Seconds the sender is asked to wait before retrying.
        retry_after_secs: u64,
        /// What failed.
        #[source]
        cause: PublishError,
    },
}

impl Error {
    /// The HTTP status the error is answered with: the one mapping from errors to statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Framing(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) | Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead(_) | Self::BodyTooDeep(_) | Self::DedupKeyNotUtf8 { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Handshake(reason) => reason.status(),
            Self::PathConflict { .. }
            | Self::SignatureSetup { .. }
            | Self::HandshakeSetup { .. }
            | Self::AccessSetup { .. }
            | Self::PollWithoutEgress { .. }
            | Self::EgressEndpoint { .. }
            | Self::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short machine-readable kind, the `error` field of the JSON body.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Framing(_) => "bad_framing",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized(_) => "unauthorized",
            Self::Signature(reason) => reason.kind(),
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyRead(_) => "bad_body",
            Self::BodyTooDeep(_) => "body_too_deep",
            Self::DedupKeyNotUtf8 { .. } => "bad_delivery_id",
            Self::Forbidden => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Handshake(reason) => reason.kind(),
            Self::PathConflict { .. }
            | Self::SignatureSetup { .. }
            | Self::HandshakeSetup { .. }
            | Self::AccessSetup { .. }
            | Self::PollWithoutEgress { .. }
            | Self::EgressEndpoint { .. }
            | Self::Serve(_) => "internal",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let message = match &self {
            // The auth reason names the problem (missing, malformed, wrong) and nothing sent.
            Self::Unauthorized(reason) => reason.to_string(),
            // Names the problem and header, never a secret or the expected signature.
            Self::Signature(reason) => reason.to_string(),
            Self::Unavailable { cause, .. } => format!("{self}: {cause}"),
            other => other.to_string(),
        };
        let body = serde_json::json!({ "error": self.kind(), "message": message });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            // Only basic auth has a challenge; a signature is not something a client retries
            // with other credentials.
            Self::Unauthorized(reason) if reason.challenges() => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(crate::auth::CHALLENGE),
                );
            }
            Self::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            Self::RateLimited { retry_after_secs }
            | Self::Unavailable {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}
