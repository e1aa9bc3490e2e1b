//! What a delivery's result means: acknowledge, retry later, or dead-letter — and after how long.
//! Pure functions, so the policy is testable without NATS or a partner.

use std::time::Duration;

use hookyard_core::fault::{self, Class, Wait, WaitReason};

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
    /// No call to the partner was possible (its breaker is open, egress or the token service
    /// unreachable, consent missing): retried after the wait, without spending a delivery.
    Wait(Wait),
}

impl From<Class> for Failure {
    fn from(class: Class) -> Self {
        match class {
            Class::Retryable => Self::Retryable,
            Class::Permanent => Self::Permanent,
            Class::Wait(wait) => Self::Wait(wait),
        }
    }
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
    /// NAK it with this delay, the delivery not counted as an attempt (see [`Failure::Wait`]).
    Wait {
        /// When to try again.
        delay: Duration,
        /// Why no attempt was possible.
        reason: WaitReason,
    },
}

impl Verdict {
    /// The outcome as the `outcome` label of `hookyard_worker_deliveries_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ack => "handled",
            Self::Retry(_) => "retry",
            Self::Wait { .. } => "wait",
            Self::DeadLetter(_) => "dead_letter",
        }
    }
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
    fault::classify_http(status).map(Failure::from)
}

/// How a failed egress RPC is treated. A partner's HTTP error is a successful RPC; a failed RPC
/// means no response was obtained (retryable), the request is wrong (permanent), or no call
/// was possible (a wait), as [`hookyard_core::fault`] says.
pub fn classify_rpc(status: &tonic::Status) -> Failure {
    fault::classify(status).into()
}

/// Shortest and longest wait between tries when no call was possible.
const WAIT_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(600));

/// How long to wait before trying again when no call was possible: what the refusing side
/// said, else a default for the reason — long for a person's consent, short for a service
/// that is restarting.
pub fn wait_delay(wait: Wait) -> Duration {
    let default = match wait.reason {
        // A person is about to click Connect: once they have, held events flow within seconds.
        WaitReason::NeedsConsent => Duration::from_secs(15),
        WaitReason::UnknownConnection => Duration::from_secs(10),
        WaitReason::BreakerOpen | WaitReason::TokenUnavailable => Duration::from_secs(5),
        WaitReason::ServiceUnavailable => Duration::from_secs(2),
    };
    wait.retry_after
        .unwrap_or(default)
        .clamp(WAIT_BOUNDS.0, WAIT_BOUNDS.1)
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
            Failure::Wait(wait) => Verdict::Wait {
                delay: wait_delay(*wait),
                reason: wait.reason,
            },
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
    fn grpc_codes_are_classified_and_waits_are_not_attempts() {
        use tonic::{Code, Status};
        for retry in [
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Internal,
        ] {
            assert_eq!(
                classify_rpc(&Status::new(retry, "x")),
                Failure::Retryable,
                "{retry:?}"
            );
        }
        for permanent in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::PermissionDenied,
        ] {
            assert_eq!(
                classify_rpc(&Status::new(permanent, "x")),
                Failure::Permanent,
                "{permanent:?}"
            );
        }
        let open = fault::wait_status(
            Code::Unavailable,
            "circuit breaker of connection erp is open",
            WaitReason::BreakerOpen,
            Some(Duration::from_secs(7)),
        );
        let wait = Wait {
            reason: WaitReason::BreakerOpen,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(classify_rpc(&open), Failure::Wait(wait));
        let b = [Duration::from_millis(100)];
        // Even on the last allowed delivery a wait is not the end of the retries.
        assert_eq!(
            verdict(&failed(Failure::Wait(wait)), 3, 3, &b),
            Verdict::Wait {
                delay: Duration::from_secs(7),
                reason: WaitReason::BreakerOpen
            }
        );
    }

    #[test]
    fn waits_without_a_time_use_the_reasons_default_within_bounds() {
        let wait = |reason, retry_after| Wait {
            reason,
            retry_after,
        };
        assert_eq!(
            wait_delay(wait(WaitReason::NeedsConsent, None)),
            Duration::from_secs(15)
        );
        assert_eq!(
            wait_delay(wait(WaitReason::ServiceUnavailable, None)),
            Duration::from_secs(2)
        );
        assert_eq!(
            wait_delay(wait(WaitReason::BreakerOpen, Some(Duration::ZERO))),
            WAIT_BOUNDS.0
        );
        assert_eq!(
            wait_delay(wait(
                WaitReason::BreakerOpen,
                Some(Duration::from_secs(86_400))
            )),
            WAIT_BOUNDS.1
        );
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
