//! Everything that can go wrong in the token service, and its one mapping to gRPC status codes.
//!
//! Messages name the connection and what happened, never a secret, a token or a response body;
//! causes are kept as `#[source]` for logs (reqwest errors without their URL).

/// A token service failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection of that name in the integration file.
    #[error("unknown connection {0}")]
    UnknownConnection(String),
    /// The connection exists but does not use `oauth2_client_credentials`.
    #[error("connection {0} does not use oauth2_client_credentials")]
    NotOAuth2(String),
    /// The authorization server could not be reached or did not answer in time.
    #[error("authorization server of connection {connection} could not be reached")]
    Unreachable {
        /// Connection name.
        connection: String,
        #[source]
        source: reqwest::Error,
    },
    /// The authorization server answered with a status that means "try later" (5xx, 408, 429).
    #[error("authorization server of connection {connection} answered HTTP {status}")]
    ServerStatus {
        /// Connection name.
        connection: String,
        /// HTTP status code.
        status: u16,
    },
    /// The authorization server refused the grant with an RFC 6749 error code.
    #[error(
        "authorization server refused the client credentials grant for connection {connection}: {code}"
    )]
    Refused {
        /// Connection name.
        connection: String,
        /// The `error` field of the response, sanitised.
        code: String,
    },
    /// The authorization server refused the grant with a 3xx/4xx status and no RFC 6749 error.
    #[error(
        "authorization server refused the client credentials grant for connection {connection} with HTTP {status}"
    )]
    RefusedStatus {
        /// Connection name.
        connection: String,
        /// HTTP status code.
        status: u16,
    },
    /// The token response could not be understood.
    #[error(
        "authorization server of connection {connection} sent a malformed token response: {reason}"
    )]
    MalformedResponse {
        /// Connection name.
        connection: String,
        /// What was wrong (fixed text, never the body).
        reason: &'static str,
    },
    /// A connection's `token_url` is not a valid URL.
    #[error("token_url of connection {connection} is invalid")]
    TokenUrl {
        /// Connection name.
        connection: String,
        #[source]
        source: oauth2::url::ParseError,
    },
    /// The HTTP client for authorization servers could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

impl Error {
    /// The gRPC status code this error is reported with.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::UnknownConnection(_) | Self::NotOAuth2(_) => Code::NotFound,
            Self::Unreachable { .. }
            | Self::ServerStatus { .. }
            | Self::MalformedResponse { .. } => Code::Unavailable,
            Self::Refused { .. } | Self::RefusedStatus { .. } => Code::FailedPrecondition,
            Self::TokenUrl { .. } | Self::HttpClient(_) | Self::Serve(_) => Code::Internal,
        }
    }

    /// The error and its causes on one line, for logs.
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

impl From<&Error> for tonic::Status {
    fn from(error: &Error) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}
