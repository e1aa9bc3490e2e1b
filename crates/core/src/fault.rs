//! How a failed call between services, or a partner's answer, is treated: the one mapping both
//! ends of a call share, so egress (and the token service behind it) and the worker agree on what
//! is retried, what is permanent, and what must only wait.
//!
//! Three classes:
//! - [`Class::Retryable`]: another attempt may succeed (the partner is overloaded or failed);
//!   an attempt was made, so it spends one of the handler's deliveries;
//! - [`Class::Permanent`]: every attempt fails the same way (a bad request, a refused
//!   destination): dead-lettered at once, with the reason;
//! - [`Class::Wait`]: no attempt could be made for a reason outside the event (the connection's
//!   circuit breaker is open, egress or the token service is unreachable, the connection needs a
//!   person's consent, the connection is not known yet): the work waits, for `retry_after` when
//!   the refusing side knows it, without spending the handler's retry budget.
//!
//! A side that refuses with [`Class::Wait`] says so in the gRPC status's metadata
//! ([`WAIT_METADATA`] with the [`WaitReason`] label, [`RETRY_AFTER_METADATA`] in milliseconds),
//! built by [`wait_status`] and read by [`classify`]. A transport failure to reach the service
//! at all is a wait too ([`WaitReason::ServiceUnavailable`]).

use std::time::Duration;

use tonic::{Code, Status, metadata::MetadataValue};

/// Metadata key naming why a call must wait (a [`WaitReason`] label).
pub const WAIT_METADATA: &str = "hookyard-wait";
/// Metadata key: how long to wait before trying again, in milliseconds.
pub const RETRY_AFTER_METADATA: &str = "hookyard-retry-after-ms";

/// How a failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Another attempt may succeed; this one counts against the retry budget.
    Retryable,
    /// Retrying cannot fix it: dead-letter at once.
    Permanent,
    /// No attempt was possible: wait, without spending the retry budget.
    Wait(Wait),
}

/// Why and for how long a call must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Why no attempt could be made.
    pub reason: WaitReason,
    /// When the refusing side knows it: how long until an attempt may succeed.
    pub retry_after: Option<Duration>,
}

/// Why no attempt could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The connection's circuit breaker is open; it half-opens after `retry_after`.
    BreakerOpen,
    /// The connection needs a person's consent (OAuth 2.0 authorization code).
    NeedsConsent,
    /// The connection is not in the integration file the service has loaded (yet).
    UnknownConnection,
    /// The token service could not provide a token for a transient reason.
    TokenUnavailable,
    /// The called service (egress, token) could not be reached at all.
    ServiceUnavailable,
}

impl WaitReason {
    const ALL: [Self; 5] = [
        Self::BreakerOpen,
        Self::NeedsConsent,
        Self::UnknownConnection,
        Self::TokenUnavailable,
        Self::ServiceUnavailable,
    ];

    /// The label in metadata, logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::BreakerOpen => "breaker_open",
            Self::NeedsConsent => "needs_consent",
            Self::UnknownConnection => "unknown_connection",
            Self::TokenUnavailable => "token_unavailable",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }

    /// The reason of a label, `None` for an unknown one.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == label)
    }
}

/// A status telling the caller to wait for `reason`, after `retry_after` when known.
pub fn wait_status(
    code: Code,
    message: impl Into<String>,
    reason: WaitReason,
    retry_after: Option<Duration>,
) -> Status {
    let mut status = Status::new(code, message);
    let metadata = status.metadata_mut();
    metadata.insert(WAIT_METADATA, MetadataValue::from_static(reason.label()));
    if let Some(after) = retry_after {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        metadata.insert(RETRY_AFTER_METADATA, MetadataValue::from(ms));
    }
    status
}

/// The wait a status carries, if it carries one.
pub fn wait_of(status: &Status) -> Option<Wait> {
    let label = status.metadata().get(WAIT_METADATA)?.to_str().ok()?;
    let reason = WaitReason::from_label(label)?;
    let retry_after = status
        .metadata()
        .get(RETRY_AFTER_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    Some(Wait {
        reason,
        retry_after,
    })
}

/// How a failed RPC is treated: the wait it carries; a transport failure (the service could not
/// be reached) as a wait; otherwise by its code. A partner's HTTP error is a successful RPC
/// (see [`classify_http`]).
pub fn classify(status: &Status) -> Class {
    if let Some(wait) = wait_of(status) {
        return Class::Wait(wait);
    }
    if is_transport_failure(status) {
        return Class::Wait(Wait {
            reason: WaitReason::ServiceUnavailable,
            retry_after: None,
        });
    }
    classify_code(status.code())
}

/// How a status code without wait metadata is treated.
pub fn classify_code(code: Code) -> Class {
    match code {
        Code::NotFound
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::OutOfRange
        | Code::AlreadyExists => Class::Permanent,
        // Unavailable, DeadlineExceeded, ResourceExhausted, Aborted, Internal, Unknown, and
        // Cancelled / DataLoss: no answer from the partner, so another attempt may get one.
        _ => Class::Retryable,
    }
}

/// How a partner's HTTP status is treated: `None` for success (2xx).
pub fn classify_http(status: u32) -> Option<Class> {
    match status {
        200..=299 => None,
        408 | 425 | 429 | 500..=599 => Some(Class::Retryable),
        _ => Some(Class::Permanent),
    }
}

/// Whether tonic failed to reach the server at all (connection refused, reset before an answer):
/// the status tonic makes itself, which carries no answer of the service.
fn is_transport_failure(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && status.metadata().is_empty()
        && std::error::Error::source(status)
            .is_some_and(|cause| cause.is::<tonic::transport::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_round_trips_through_the_status() {
        let status = wait_status(
            Code::Unavailable,
            "circuit breaker of connection erp is open",
            WaitReason::BreakerOpen,
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(
            classify(&status),
            Class::Wait(Wait {
                reason: WaitReason::BreakerOpen,
                retry_after: Some(Duration::from_millis(1500)),
            })
        );
        let consent = wait_status(
            Code::FailedPrecondition,
            "needs consent",
            WaitReason::NeedsConsent,
            None,
        );
        assert_eq!(
            wait_of(&consent).map(|w| (w.reason, w.retry_after)),
            Some((WaitReason::NeedsConsent, None))
        );
    }

    #[test]
    fn labels_round_trip_and_unknown_labels_are_ignored() {
        for reason in WaitReason::ALL {
            assert_eq!(WaitReason::from_label(reason.label()), Some(reason));
        }
        let mut status = Status::unavailable("x");
        status
            .metadata_mut()
            .insert(WAIT_METADATA, MetadataValue::from_static("no_such_reason"));
        assert_eq!(classify(&status), Class::Retryable);
    }

    #[test]
    fn codes_without_metadata_keep_their_class() {
        assert_eq!(
            classify(&Status::invalid_argument("bad path")),
            Class::Permanent
        );
        assert_eq!(
            classify(&Status::unavailable("partner down")),
            Class::Retryable
        );
        assert_eq!(
            classify(&Status::deadline_exceeded("slow")),
            Class::Retryable
        );
    }

    #[test]
    fn http_statuses() {
        assert_eq!(classify_http(204), None);
        assert_eq!(classify_http(429), Some(Class::Retryable));
        assert_eq!(classify_http(503), Some(Class::Retryable));
        assert_eq!(classify_http(404), Some(Class::Permanent));
        assert_eq!(classify_http(301), Some(Class::Permanent));
    }
}

#[cfg(test)]
mod transport {
    use super::*;

    /// A call to a port nobody listens on fails in tonic itself, before any service answered.
    #[tokio::test]
    async fn an_unreachable_service_is_a_wait() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("valid endpoint")
            .connect_lazy();
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = client
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect_err("nobody listens");
        assert_eq!(
            classify(&status),
            Class::Wait(Wait {
                reason: WaitReason::ServiceUnavailable,
                retry_after: None,
            })
        );
    }
}
