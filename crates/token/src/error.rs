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
    /// The connection exists but does not use OAuth 2.0.
    #[error("connection {0} does not use oauth2_client_credentials or oauth2_authorization_code")]
    NotOAuth2(String),
    /// An `oauth2_authorization_code` connection without the token store (NATS and a key).
    #[error("connection {0} uses oauth2_authorization_code, which needs the token store")]
    NeedsStore(String),
    /// Nobody has consented yet, or the authorization server refused the refresh token.
    #[error("connection {0} needs consent: open the token service's consent page and connect it")]
    NeedsConsent(String),
    /// Renewal failed recently and is retried later; no valid access token remains.
    #[error("authorization server of connection {connection} failed; retrying in {retry_in_ms} ms")]
    BackingOff {
        /// Connection name.
        connection: String,
        /// Time until the next attempt.
        retry_in_ms: i64,
    },
    /// Another replica holds the refresh lock and did not finish in time.
    #[error("another token service replica is renewing the token of connection {0}; try again")]
    Busy(String),
    /// The token store is not open yet (NATS not reachable since the start).
    #[error("token store is not open yet")]
    StoreNotReady,
    /// The token bucket could not be read or written.
    #[error("token store failed to {what}")]
    Store {
        /// What was being done.
        what: &'static str,
        #[source]
        source: async_nats::Error,
    },
    /// A stored record does not open with the configured keys.
    #[error("stored token of connection {connection} cannot be decrypted")]
    Undecryptable {
        /// Connection name.
        connection: String,
        #[source]
        source: crate::keys::OpenError,
    },
    /// A stored record decrypts but is not a token record.
    #[error("stored token of connection {connection} is not a valid record")]
    CorruptRecord {
        /// Connection name.
        connection: String,
    },
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
    #[error("authorization server refused the grant for connection {connection}: {code}")]
    Refused {
        /// Connection name.
        connection: String,
        /// The `error` field of the response, sanitised.
        code: String,
    },
    /// The authorization server refused the grant with a 3xx/4xx status and no RFC 6749 error.
    #[error(
        "authorization server refused the grant for connection {connection} with HTTP {status}"
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
    /// A connection's `token_url`, `authorize_url` or `redirect_uri` is not a valid URL.
    #[error("{field} of connection {connection} is invalid")]
    Url {
        /// Connection name.
        connection: String,
        /// The config field.
        field: &'static str,
        #[source]
        source: oauth2::url::ParseError,
    },
    /// The `private_key_jwt` key cannot sign (not a PEM private key of its `alg`).
    #[error("private_key_jwt.key of connection {0} is not a PEM private key for its alg")]
    PrivateKey(String),
    /// The HTTP client for authorization servers could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A connection's TLS settings cannot be used for its token requests.
    #[error(transparent)]
    Client(#[from] hookyard_outbound::ClientError),
    /// A connection's token URL is an address the SSRF guard refuses (list it in the
    /// connection's `allow_private` when the authorization server really is there).
    #[error("token_url of connection {connection} is refused by the SSRF guard: {reason}")]
    TokenUrlRefused {
        /// Connection name.
        connection: String,
        /// Why, e.g. `loopback address`.
        reason: &'static str,
    },
    /// A connection's `allow_private` holds something that is not an address or CIDR block.
    #[error("allow_private of connection {0} holds an invalid range")]
    AllowPrivate(String),
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
    /// The consent page server failed.
    #[error("consent page server failed")]
    ServeHttp(#[source] std::io::Error),
}

impl Error {
    /// The gRPC status code this error is reported with.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::UnknownConnection(_) | Self::NotOAuth2(_) => Code::NotFound,
            Self::Unreachable { .. }
            | Self::ServerStatus { .. }
            | Self::MalformedResponse { .. }
            | Self::BackingOff { .. }
            | Self::Busy(_)
            | Self::StoreNotReady
            | Self::Store { .. } => Code::Unavailable,
            Self::Refused { .. }
            | Self::RefusedStatus { .. }
            | Self::NeedsConsent(_)
            | Self::NeedsStore(_)
            | Self::Undecryptable { .. }
            | Self::CorruptRecord { .. } => Code::FailedPrecondition,
            Self::Url { .. }
            | Self::PrivateKey(_)
            | Self::HttpClient(_)
            | Self::Client(_)
            | Self::AllowPrivate(_)
            | Self::TokenUrlRefused { .. }
            | Self::Serve(_)
            | Self::ServeHttp(_) => Code::Internal,
        }
    }

    /// Whether the authorization server refused a refresh token or code as invalid
    /// (`invalid_grant`, RFC 6749 §5.2).
    pub(crate) fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Refused { code, .. } if code == "invalid_grant")
    }

    /// Whether a later attempt may succeed (the server was unreachable, slow or failing).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::ServerStatus { .. } | Self::MalformedResponse { .. }
        )
    }

    /// The error and its causes on one line, for logs.
    pub(crate) fn chain(&self) -> String {
        hookyard_core::telemetry::report(self)
    }
}

impl From<&Error> for tonic::Status {
    fn from(error: &Error) -> Self {
        match error {
            // The call can succeed once a person consents: callers wait rather than give up.
            Error::NeedsConsent(_) => hookyard_core::fault::wait_status(
                error.code(),
                error.to_string(),
                hookyard_core::fault::WaitReason::NeedsConsent,
                None,
            ),
            _ => tonic::Status::new(error.code(), error.to_string()),
        }
    }
}
