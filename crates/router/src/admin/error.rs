//! The admin API's failures and their one mapping to gRPC codes and HTTP statuses, so the two
//! faces of the API agree. Messages name what was asked for, never a secret.

use axum::http::StatusCode;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The request is malformed: an unknown page token, a range that ends before it starts, a
    /// selector that selects nothing.
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// What was asked for does not exist (or is no longer kept).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// `event`, `dead letter`, `handler`.
        kind: &'static str,
        id: String,
    },
    /// The request is valid but cannot be done now (a handler whose worker never started).
    #[error("{0}")]
    Precondition(String),
    /// NATS did not answer or refused (retry later).
    #[error("failed to {what}")]
    Nats {
        what: &'static str,
        #[source]
        source: async_nats::Error,
    },
}

impl Error {
    /// A NATS failure while doing `what`.
    pub(crate) fn nats(what: &'static str) -> impl FnOnce(async_nats::Error) -> Self {
        move |source| Self::Nats { what, source }
    }

    /// The gRPC code of the failure.
    pub(crate) fn code(&self) -> tonic::Code {
        match self {
            Self::Invalid(_) => tonic::Code::InvalidArgument,
            Self::NotFound { .. } => tonic::Code::NotFound,
            Self::Precondition(_) => tonic::Code::FailedPrecondition,
            Self::Nats { .. } => tonic::Code::Unavailable,
        }
    }

    /// The HTTP status of the failure, on the JSON mapping.
    pub(crate) fn status(&self) -> StatusCode {
        match self.code() {
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        tonic::Status::new(error.code(), crate::report(&error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_and_http_statuses_agree() {
        let cases = [
            (Error::Invalid("x"), 400),
            (
                Error::NotFound {
                    kind: "event",
                    id: "e".to_owned(),
                },
                404,
            ),
            (Error::Precondition("p".to_owned()), 409),
            (
                Error::Nats {
                    what: "read",
                    source: "down".into(),
                },
                503,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }
}
