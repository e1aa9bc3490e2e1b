//! When an attempt is repeated within one call, and after how long.
//!
//! Only requests that are safe to repeat are: GET, HEAD, PUT, DELETE and OPTIONS, and POST or
//! PATCH when they carry an idempotency key (the partner can then recognise the repeat). They
//! are repeated after a connect error, a timeout, or a 429, 502, 503 or 504, after a backoff
//! with full jitter (a random wait up to `initial_backoff × 2^(retry-1)`, at most
//! `max_backoff`), or after the partner's `Retry-After` (seconds or an HTTP date) when it is at
//! most `max_retry_after`; a longer one ends the call with the response as it is.

use std::time::{Duration, SystemTime};

use hookyard_core::config::Retry;
use http::Method;

/// Whether a request may be sent more than once.
pub(crate) fn repeatable(method: &Method, has_idempotency_key: bool) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    ) || has_idempotency_key
}

/// Statuses that say "try again".
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The wait before retry number `retry` (1 for the first retry).
pub(crate) fn backoff(policy: &Retry, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    let cap = policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff);
    cap.mul_f64(fastrand::f64())
}

/// The wait a `Retry-After` value asks for, as of `now`; `None` when it is not a number of
/// seconds or an HTTP date.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_repeatable_requests_are_retried() {
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            assert!(repeatable(&m, false), "{m}");
        }
        assert!(!repeatable(&Method::POST, false));
        assert!(!repeatable(&Method::PATCH, false));
        assert!(repeatable(&Method::POST, true));
        assert!(repeatable(&Method::PATCH, true));
    }

    #[test]
    fn backoff_grows_within_its_caps() {
        let policy = Retry {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..100 {
            assert!(backoff(&policy, 1) <= Duration::from_millis(100));
            assert!(backoff(&policy, 3) <= Duration::from_millis(400));
            assert!(backoff(&policy, 40) <= Duration::from_millis(500));
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:42 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }
}
