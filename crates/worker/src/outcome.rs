//! What a delivery's result means: acknowledge, retry later, or dead-letter — and after how long.
//! Pure functions, so the policy is testable without NATS or a partner.

use std::time::Duration;

/// How a failed attempt is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Might succeed later (partner overloaded or down, egress unreachable): retried with
    /// backoff until the handler's `max_deliver`.
    Retryable,
    /// Will fail the same way every time (bad request, unknown connection, expression error):
    /// dead-lettered at once.
    Permanent,
    /// The work message itself cannot be read: dead-lettered at once.
    BadEvent,
}

/// The result of one attempt at a work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Every step succeeded.
    Succeeded,
    /// A step failed.
    Failed {
        /// How to treat it.
        kind: Failure,
        /// HTTP status of the partner's answer, 0 when there was none.
        status: u32,
        /// What went wrong, for the dead letter (never contains a secret or a body).
        error: String,
    },
}

/// What to do with the work message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledge it: done.
    Ack,
    /// NAK it with this delay: JetStream redelivers it after the delay.
    Retry(Duration),
    /// Publish a dead letter with this reason, then acknowledge it.
    DeadLetter(Reason),
}

/// Machine-readable dead-letter reason, as stored in `DeadLetter.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A retryable failure on the last allowed delivery.
    RetriesExhausted,
    /// A failure that retrying cannot fix.
    PermanentFailure,
    /// The work message cannot be decoded.
    BadEvent,
}

impl Reason {
    /// The reason as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "retries_exhausted",
            Self::PermanentFailure => "permanent_failure",
            Self::BadEvent => "bad_event",
        }
    }
}

/// Characters of a partner's answer a dead letter keeps.
const EXCERPT_CHARS: usize = 200;

/// Why a partner's answer failed the attempt: the status and the start of its body, on one line
/// (control characters escaped, at most [`EXCERPT_CHARS`] of it), so a dead letter says what
/// the partner objected to without holding its whole answer.
pub fn partner_refusal(step: usize, status: u32, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("step {step}: the partner answered HTTP {status} with an empty body");
    }
    let mut excerpt: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        excerpt.push('…');
    }
    format!("step {step}: the partner answered HTTP {status}: {excerpt}")
}

/// How a partner's HTTP status is treated: `None` for success (2xx).
pub fn classify_status(status: u32) -> Option<Failure> {
    match status {
        200..=299 => None,
        408 | 425 | 429 | 500..=599 => Some(Failure::Retryable),
        _ => Some(Failure::Permanent),
    }
}

/// How a failed egress RPC is treated. A partner's HTTP error is a successful RPC; a failed RPC
/// means no response was obtained (retryable) or the request is wrong (permanent).
pub fn classify_code(code: tonic::Code) -> Failure {
    use tonic::Code;
    match code {
        Code::NotFound
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::OutOfRange
        | Code::AlreadyExists => Failure::Permanent,
        // Unavailable, DeadlineExceeded, ResourceExhausted, Aborted, Internal, Unknown, and
        // Cancelled / DataLoss: no answer from the partner, so another attempt may get one.
        _ => Failure::Retryable,
    }
}

/// Delay before the redelivery that follows delivery number `delivered` (1-based): the
/// handler's `backoff[delivered - 1]`, the last entry repeating.
pub fn backoff_delay(backoff: &[Duration], delivered: u32) -> Duration {
    let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
    backoff
        .get(index)
        .or(backoff.last())
        .copied()
        .unwrap_or(Duration::from_secs(1))
}

/// Decides what to do after delivery number `delivered` of at most `max_deliver` ended with
/// `attempt`.
pub fn verdict(
    attempt: &Attempt,
    delivered: u32,
    max_deliver: u32,
    backoff: &[Duration],
) -> Verdict {
    match attempt {
        Attempt::Succeeded => Verdict::Ack,
        Attempt::Failed { kind, .. } => match kind {
            Failure::Retryable if delivered < max_deliver => {
                Verdict::Retry(backoff_delay(backoff, delivered))
            }
            Failure::Retryable => Verdict::DeadLetter(Reason::RetriesExhausted),
            Failure::Permanent => Verdict::DeadLetter(Reason::PermanentFailure),
            Failure::BadEvent => Verdict::DeadLetter(Reason::BadEvent),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_refusal_quotes_the_start_of_the_answer_on_one_line() {
        assert_eq!(
            partner_refusal(1, 422, br#" {"error":"unknown sku A-1"}"#),
            r#"step 1: the partner answered HTTP 422: {"error":"unknown sku A-1"}"#
        );
        assert_eq!(
            partner_refusal(0, 500, b"  \n"),
            "step 0: the partner answered HTTP 500 with an empty body"
        );
        let long = partner_refusal(0, 400, "é".repeat(1000).as_bytes());
        assert!(long.ends_with('…'));
        assert_eq!(long.chars().filter(|c| *c == 'é').count(), EXCERPT_CHARS);
        let hostile = partner_refusal(0, 400, b"bad\r\nX-Injected: 1\0\xff");
        assert!(!hostile.contains('\r') && !hostile.contains('\n') && !hostile.contains('\0'));
        assert!(
            hostile.contains("bad\\r\\nX-Injected: 1\\u{0}\u{fffd}"),
            "{hostile}"
        );
    }

    fn failed(kind: Failure) -> Attempt {
        Attempt::Failed {
            kind,
            status: 0,
            error: String::new(),
        }
    }

    #[test]
    fn statuses_are_classified() {
        for ok in [200, 201, 204, 299] {
            assert_eq!(classify_status(ok), None, "{ok}");
        }
        for retry in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(retry), Some(Failure::Retryable), "{retry}");
        }
        for permanent in [100, 301, 304, 400, 401, 403, 404, 409, 410, 422, 0, 600] {
            assert_eq!(
                classify_status(permanent),
                Some(Failure::Permanent),
                "{permanent}"
            );
        }
    }

    #[test]
    fn grpc_codes_are_classified() {
        use tonic::Code;
        for retry in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Internal,
            Code::Unknown,
            Code::Cancelled,
        ] {
            assert_eq!(classify_code(retry), Failure::Retryable, "{retry:?}");
        }
        for permanent in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::PermissionDenied,
        ] {
            assert_eq!(
                classify_code(permanent),
                Failure::Permanent,
                "{permanent:?}"
            );
        }
    }

    #[test]
    fn backoff_index_follows_deliveries_and_repeats_the_last() {
        let b = [1, 5, 30].map(Duration::from_secs);
        assert_eq!(backoff_delay(&b, 1), b[0]);
        assert_eq!(backoff_delay(&b, 2), b[1]);
        assert_eq!(backoff_delay(&b, 3), b[2]);
        assert_eq!(backoff_delay(&b, 4), b[2]);
        assert_eq!(backoff_delay(&b, u32::MAX), b[2]);
        // 0 is not a real delivery count; it must not underflow
        assert_eq!(backoff_delay(&b, 0), b[0]);
        assert_eq!(backoff_delay(&[], 3), Duration::from_secs(1));
    }

    #[test]
    fn retryable_failures_retry_until_the_last_delivery() {
        let b = [Duration::from_millis(100), Duration::from_millis(200)];
        let a = failed(Failure::Retryable);
        assert_eq!(verdict(&a, 1, 3, &b), Verdict::Retry(b[0]));
        assert_eq!(verdict(&a, 2, 3, &b), Verdict::Retry(b[1]));
        assert_eq!(
            verdict(&a, 3, 3, &b),
            Verdict::DeadLetter(Reason::RetriesExhausted)
        );
        // a redelivery past the limit (the worker died mid-attempt) is dead-lettered too
        assert_eq!(
            verdict(&a, 5, 3, &b),
            Verdict::DeadLetter(Reason::RetriesExhausted)
        );
    }

    #[test]
    fn permanent_failures_and_bad_events_are_dead_lettered_at_once() {
        let b = [Duration::from_secs(1)];
        assert_eq!(
            verdict(&failed(Failure::Permanent), 1, 5, &b),
            Verdict::DeadLetter(Reason::PermanentFailure)
        );
        assert_eq!(
            verdict(&failed(Failure::BadEvent), 1, 5, &b),
            Verdict::DeadLetter(Reason::BadEvent)
        );
        assert_eq!(verdict(&Attempt::Succeeded, 5, 5, &b), Verdict::Ack);
    }

    #[test]
    fn reasons_are_the_stored_strings() {
        assert_eq!(Reason::RetriesExhausted.as_str(), "retries_exhausted");
        assert_eq!(Reason::PermanentFailure.as_str(), "permanent_failure");
        assert_eq!(Reason::BadEvent.as_str(), "bad_event");
    }
}
