//! Everything that can go wrong in egress, and its one mapping to gRPC status codes.
//!
//! Messages name the connection and what happened. They never hold a URL (a `query` connection
//! carries its API key in it), a header value, a body or a token; reqwest errors are stored
//! without their URL.

use hookyard_core::fault::{self, Class, Wait, WaitReason};
use tonic::Code;

/// An egress failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection of that name in the integration file.
    #[error("unknown connection {0}")]
    UnknownConnection(String),
    /// The method is not one egress sends.
    #[error("unsupported HTTP method; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS")]
    Method,
    /// The path could leave the connection's base URL or is malformed.
    #[error("invalid path: {0}")]
    Path(&'static str),
    /// A request header has an invalid name or value (e.g. a line break).
    #[error("request header {index} has an invalid {part}")]
    Header {
        /// Position of the header in the request.
        index: usize,
        /// `name` or `value`.
        part: &'static str,
    },
    /// The idempotency key is not a valid header value.
    #[error("idempotency_key is not a valid header value")]
    IdempotencyKey,
    /// The path's query sets the parameter the connection authenticates with.
    #[error("query parameter {0} is set by the connection")]
    ReservedQueryParameter(String),
    /// The outbound guard refused the destination.
    #[error("destination refused by the SSRF guard: {0}")]
    Refused(&'static str),
    /// The partner did not answer within the connection's timeout.
    #[error("partner of connection {connection} did not answer in time")]
    Timeout {
        /// Connection name.
        connection: String,
        #[source]
        source: reqwest::Error,
    },
    /// The partner could not be reached or the exchange broke off.
    #[error("partner of connection {connection} could not be reached")]
    Unreachable {
        /// Connection name.
        connection: String,
        #[source]
        source: reqwest::Error,
    },
    /// The partner's response body is larger than egress returns.
    #[error("response body from connection {connection} exceeds {limit} bytes")]
    ResponseTooLarge {
        /// Connection name.
        connection: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The token service could not provide or invalidate a token.
    #[error("token service failed for connection {connection}: {}", .status.message())]
    Token {
        /// Connection name.
        connection: String,
        /// The token service's answer (its messages hold no secret).
        #[source]
        status: tonic::Status,
    },
    /// The token service returned a token that cannot be put in a header.
    #[error("token service returned an unusable token for connection {0}")]
    UnusableToken(String),
    /// A connection uses OAuth 2.0 but no token service endpoint is configured.
    #[error("connection {0} uses oauth2_client_credentials but no token service endpoint is set")]
    NoTokenEndpoint(String),
    /// The token service endpoint is not a valid URI.
    #[error("invalid token service endpoint {endpoint}")]
    TokenEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A connection's `base_url` cannot be used.
    #[error("base_url of connection {0} is not a valid http or https URL")]
    BaseUrl(String),
    /// A connection's auth cannot be put in a request (the value is not named: it is secret).
    #[error("auth of connection {connection} is not a valid {what}")]
    Auth {
        /// Connection name.
        connection: String,
        /// What was wrong, e.g. `header name`.
        what: &'static str,
    },
    /// A connection's HTTP client could not be built.
    #[error("cannot build the HTTP client of connection {connection}")]
    HttpClient {
        /// Connection name.
        connection: String,
        #[source]
        source: reqwest::Error,
    },
    /// The connection's circuit breaker is open: its partner failed repeatedly just now.
    #[error("circuit breaker of connection {connection} is open")]
    CircuitOpen {
        /// Connection name.
        connection: String,
        /// How long until the breaker lets a probe through.
        retry_after: std::time::Duration,
    },
    /// A connection's `allow_private` holds something that is not an address or CIDR block.
    #[error("allow_private of connection {0} holds an invalid range")]
    AllowPrivate(String),
    /// A connection's TLS settings cannot be used (never quotes key material).
    #[error("{what} of connection {connection}: {detail}")]
    Tls {
        /// Connection name.
        connection: String,
        /// The key, e.g. `tls.ca`.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

impl From<hookyard_outbound::ClientError> for Error {
    fn from(error: hookyard_outbound::ClientError) -> Self {
        match error {
            hookyard_outbound::ClientError::Tls {
                connection,
                what,
                detail,
            } => Self::Tls {
                connection,
                what,
                detail,
            },
            hookyard_outbound::ClientError::HttpClient { connection, source } => {
                Self::HttpClient { connection, source }
            }
        }
    }
}

impl Error {
    /// The gRPC status code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            Self::UnknownConnection(_) => Code::NotFound,
            Self::Method
            | Self::Path(_)
            | Self::Header { .. }
            | Self::IdempotencyKey
            | Self::ReservedQueryParameter(_) => Code::InvalidArgument,
            Self::Refused(_) => Code::PermissionDenied,
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::Unreachable { .. } | Self::UnusableToken(_) | Self::CircuitOpen { .. } => {
                Code::Unavailable
            }
            Self::ResponseTooLarge { .. } => Code::ResourceExhausted,
            Self::Token { status, .. } => match status.code() {
                // The token service not knowing the connection is a configuration mismatch
                // between the services, not an unknown connection of this call.
                Code::NotFound
                | Code::FailedPrecondition
                | Code::InvalidArgument
                | Code::PermissionDenied
                | Code::Unauthenticated => Code::FailedPrecondition,
                Code::DeadlineExceeded => Code::DeadlineExceeded,
                _ => Code::Unavailable,
            },
            Self::NoTokenEndpoint(_)
            | Self::TokenEndpoint { .. }
            | Self::BaseUrl(_)
            | Self::Auth { .. }
            | Self::HttpClient { .. }
            | Self::AllowPrivate(_)
            | Self::Tls { .. }
            | Self::Serve(_) => Code::Internal,
        }
    }

    /// The error and its causes on one line, for logs.
    pub(crate) fn chain(&self) -> String {
        hookyard_core::telemetry::report(self)
    }

    /// Classifies a failed exchange with the partner, dropping the URL from the error; a
    /// refusal of the SSRF guard (from the resolver or a redirect hop) is [`Error::Refused`].
    pub(crate) fn transport(connection: &str, error: reqwest::Error) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = cause {
            if let Some(refusal) = e.downcast_ref::<hookyard_outbound::Refusal>() {
                return Self::Refused(refusal.reason);
            }
            cause = e.source();
        }
        let connection = connection.to_owned();
        let source = error.without_url();
        if source.is_timeout() {
            Self::Timeout { connection, source }
        } else {
            Self::Unreachable { connection, source }
        }
    }
}

impl Error {
    /// Why the caller must wait rather than spend an attempt: no call to the partner was
    /// possible for a reason outside the request (see [`hookyard_core::fault`]).
    pub fn wait(&self) -> Option<Wait> {
        let wait = |reason, retry_after| {
            Some(Wait {
                reason,
                retry_after,
            })
        };
        match self {
            Self::CircuitOpen { retry_after, .. } => {
                wait(WaitReason::BreakerOpen, Some(*retry_after))
            }
            // Egress may not have read the file that added the connection yet.
            Self::UnknownConnection(_) => wait(WaitReason::UnknownConnection, None),
            Self::Token { status, .. } => match fault::classify(status) {
                Class::Wait(w) => Some(w),
                // The token service failing or unreachable: no attempt was made either.
                Class::Retryable => wait(WaitReason::TokenUnavailable, None),
                Class::Permanent => None,
            },
            _ => None,
        }
    }
}

impl From<&Error> for tonic::Status {
    fn from(error: &Error) -> Self {
        match error.wait() {
            Some(w) => fault::wait_status(error.code(), error.to_string(), w.reason, w.retry_after),
            None => tonic::Status::new(error.code(), error.to_string()),
        }
    }
}
