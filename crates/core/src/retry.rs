//! Retrying a start-up step (stream and consumer setup) with backoff until NATS answers or the
//! service is stopped. Retrying an event's delivery is each service's own policy, not this.

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

/// Runs `attempt` until it succeeds, waiting [`backoff`] between attempts and passing each
/// failure and its attempt number (from 0) to `failed`, e.g. to log it; `None` when `stop` is
/// cancelled first.
pub async fn until_ok<T, E, F, Fut>(
    stop: &CancellationToken,
    mut attempt: F,
    mut failed: impl FnMut(u32, &E),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut number: u32 = 0;
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => failed(number, &error),
        }
        let delay = backoff(number);
        number = number.saturating_add(1);
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Delay after failed attempt `attempt` (from 0): 250 ms doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << attempt.min(5));
    Duration::from_millis(ms.min(5_000))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(5));
        assert_eq!(backoff(60), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn until_ok_retries_with_backoff_until_success() {
        let stop = CancellationToken::new();
        let calls = Cell::new(0u32);
        let mut failures = Vec::new();
        let started = tokio::time::Instant::now();
        let value = until_ok(
            &stop,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 3 { Err(n) } else { Ok("ready") } }
            },
            |attempt, error: &u32| failures.push((attempt, *error)),
        )
        .await;
        assert_eq!(value, Some("ready"));
        assert_eq!(failures, [(0, 1), (1, 2)]);
        assert_eq!(started.elapsed(), backoff(0) + backoff(1));
    }

    #[tokio::test(start_paused = true)]
    async fn until_ok_gives_up_when_stopped() {
        let stop = CancellationToken::new();
        stop.cancel();
        let value: Option<()> = until_ok(&stop, || async { Err::<(), _>(()) }, |_, _| {}).await;
        assert_eq!(value, None);
    }
}
