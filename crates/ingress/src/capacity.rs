//! Whether JetStream accepts writes: a publish refused because the store is full (the
//! server's file store, the account's storage or the in stream's own size cap) marks it full,
//! and from then on requests are answered 503 at once instead of each waiting for the same
//! refusal; readiness is not ready. A background probe ([`crate::health`]) marks it writable
//! again when space was freed.
//!
//! JetStream has no side-effect-free "would this write fit", so the probe compares the in
//! stream's size, its cap and the account's storage use with what they were when the store
//! filled: any of them going the right way (a purge, messages aging out, a raised cap) means
//! room. Space freed where the account cannot see it (another account, the disk itself) is not
//! visible: after [`RETRY_FULL`] the probe lets writes try again, and the next refusal marks
//! the store full once more.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, ErrorCode};
use tokio::sync::Notify;

use crate::publish::PublishError;

/// Longest time writes stay refused without a sign of freed space.
pub(crate) const RETRY_FULL: Duration = Duration::from_secs(30);

/// JetStream's answers that mean "no room to store it".
const FULL: [ErrorCode; 6] = [
    ErrorCode::ACCOUNT_RESOURCES_EXCEEDED,
    ErrorCode::INSUFFICIENT_RESOURCES,
    ErrorCode::STORAGE_RESOURCES_EXCEEDED,
    ErrorCode::MEMORY_RESOURCES_EXCEEDED,
    // The store refused the message; "maximum bytes exceeded" (a full stream under
    // `discard: new`) is reported with this code.
    ErrorCode::STREAM_STORE_FAILED,
    ErrorCode::STREAM_MAX_BYTES_REQUIRED,
];

/// What the store looked like when it filled up.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    stream_bytes: u64,
    stream_max_bytes: i64,
    account_storage: u64,
}

/// Whether the store accepts writes.
#[derive(Default)]
pub(crate) struct Capacity {
    full: AtomicBool,
    /// Set while full, once the probe has looked at the store.
    baseline: Mutex<Option<(Baseline, Instant)>>,
    /// Woken when the store is marked full, so readiness changes at once.
    changed: Notify,
}

impl Capacity {
    /// True while writes are known to be refused for lack of space.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Looks at a publish's outcome: a refusal for lack of space marks the store full.
    pub(crate) fn observe(&self, error: &PublishError) {
        if is_full_error(error) && !self.full.swap(true, Ordering::AcqRel) {
            tracing::warn!(%error, "jetstream store full, refusing events until space is freed");
            self.changed.notify_waiters();
        }
    }

    /// Waits until the store is marked full.
    pub(crate) async fn filled(&self) {
        self.changed.notified().await;
    }

    /// While full, checks for freed space and marks the store writable when there is some.
    pub(crate) async fn probe(&self, js: &jetstream::Context, stream: &str) {
        if !self.is_full() {
            return;
        }
        let Some(now) = look(js, stream).await else {
            return;
        };
        let recovered = {
            let mut baseline = self
                .baseline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match *baseline {
                None => {
                    *baseline = Some((now, Instant::now()));
                    false
                }
                Some((then, since)) => freed(then, now) || since.elapsed() >= RETRY_FULL,
            }
        };
        if recovered {
            self.clear();
            tracing::info!(stream, "jetstream store has room again, accepting events");
        }
    }

    fn clear(&self) {
        *self
            .baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.full.store(false, Ordering::Release);
    }
}

/// Whether `error` says the store has no room.
fn is_full_error(error: &PublishError) -> bool {
    match error {
        PublishError::BatchRejected { err_code, .. } => FULL.contains(&ErrorCode(*err_code)),
        PublishError::Rejected { source, .. } => std::error::Error::source(source)
            .and_then(|cause| cause.downcast_ref::<jetstream::Error>())
            .is_some_and(|cause| FULL.contains(&cause.error_code())),
        _ => false,
    }
}

/// Space was freed between `then` and `now`.
fn freed(then: Baseline, now: Baseline) -> bool {
    now.stream_bytes < then.stream_bytes
        || now.account_storage < then.account_storage
        || (then.stream_max_bytes > 0
            && (now.stream_max_bytes < 0 || now.stream_max_bytes > then.stream_max_bytes))
}

async fn look(js: &jetstream::Context, stream: &str) -> Option<Baseline> {
    let timeout = Duration::from_secs(1);
    let mut stream = tokio::time::timeout(timeout, js.get_stream(stream))
        .await
        .ok()?
        .ok()?;
    let info = tokio::time::timeout(timeout, stream.info())
        .await
        .ok()?
        .ok()?;
    let (stream_bytes, stream_max_bytes) = (info.state.bytes, info.config.max_bytes);
    let account = tokio::time::timeout(timeout, js.query_account())
        .await
        .ok()?
        .ok()?;
    Some(Baseline {
        stream_bytes,
        stream_max_bytes,
        account_storage: account.storage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream_bytes: u64, stream_max_bytes: i64, account_storage: u64) -> Baseline {
        Baseline {
            stream_bytes,
            stream_max_bytes,
            account_storage,
        }
    }

    #[test]
    fn freed_space_is_a_smaller_stream_or_account_or_a_larger_cap() {
        let then = at(100, 200, 1000);
        assert!(!freed(then, at(100, 200, 1000)));
        assert!(!freed(then, at(120, 200, 1100)));
        assert!(freed(then, at(0, 200, 1000)));
        assert!(freed(then, at(100, 200, 10)));
        assert!(freed(then, at(100, 400, 1000)));
        assert!(freed(then, at(100, -1, 1000)));
        assert!(!freed(at(100, -1, 1000), at(100, -1, 1000)));
    }

    #[test]
    fn only_refusals_for_space_mark_the_store_full() {
        let capacity = Capacity::default();
        capacity.observe(&PublishError::Timeout(Duration::from_secs(1)));
        capacity.observe(&PublishError::BatchRejected {
            err_code: 10201,
            description: "duplicate".into(),
        });
        assert!(!capacity.is_full());
        capacity.observe(&PublishError::BatchRejected {
            err_code: 10047,
            description: "insufficient storage resources available".into(),
        });
        assert!(capacity.is_full());
    }
}
