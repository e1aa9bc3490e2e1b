//! Event ids, dedup keys and the NATS header names hookyard's messages carry.
//!
//! The event id is derived from the source and the dedup key, not drawn at random: a sender
//! that retries gets the same id in its 202 as the stored copy, and the router's
//! `Nats-Msg-Id` (`<event id>:<handler>`) collapses republished work the same way.

use sha2::{Digest, Sha256};

/// Header NATS JetStream deduplicates on.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// Copy of the event id on every hookyard message, for operators reading a stream.
pub const HEADER_EVENT_ID: &str = "Hookyard-Event-Id";
/// Source name on messages in `HOOKYARD_IN`.
pub const HEADER_SOURCE: &str = "Hookyard-Source";
/// Handler name on work and dead-letter messages.
pub const HEADER_HANDLER: &str = "Hookyard-Handler";
/// Dead-letter reason, mirrored from the payload.
pub const HEADER_REASON: &str = "Hookyard-Reason";
/// Replay id on work items an operator replayed, mirrored from the payload.
pub const HEADER_REPLAY_ID: &str = "Hookyard-Replay-Id";

/// Dedup key of a request whose sender gives no delivery id: a hash of the body.
pub fn body_dedup_key(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Stable event id for `(source, dedup key)`: `evt_` and 32 hex digits.
pub fn event_id(source: &str, dedup_key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(source.as_bytes());
    hash.update([0]);
    hash.update(dedup_key.as_bytes());
    let digest = hash.finalize();
    format!("evt_{}", hex::encode(&digest[..16]))
}

/// `Nats-Msg-Id` of the work message for one handler.
pub fn work_msg_id(event_id: &str, handler: &str) -> String {
    format!("{event_id}:{handler}")
}

/// `Nats-Msg-Id` of a replayed work item: its own, so the stream does not absorb it as a
/// duplicate of the original; also the idempotency key of a replay that asks for a new one.
pub fn replay_msg_id(event_id: &str, handler: &str, replay_id: &str) -> String {
    format!("{event_id}:{handler}:{replay_id}")
}

/// Idempotency key egress sends for a handler's call: the same as the work message id.
pub fn idempotency_key(event_id: &str, handler: &str) -> String {
    work_msg_id(event_id, handler)
}

/// Milliseconds since the Unix epoch, for envelope timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_stable_and_separates_sources() {
        let a = event_id("shop", "delivery-1");
        assert_eq!(a, event_id("shop", "delivery-1"));
        assert_ne!(a, event_id("shop2", "delivery-1"));
        assert_ne!(a, event_id("shop", "delivery-2"));
        // no ambiguity from concatenation: ("ab","c") vs ("a","bc")
        assert_ne!(event_id("ab", "c"), event_id("a", "bc"));
        assert_eq!(a.len(), 4 + 32);
    }

    #[test]
    fn body_dedup_key_differs_per_body() {
        assert_ne!(body_dedup_key(b"{}"), body_dedup_key(b"{ }"));
        assert!(body_dedup_key(b"").starts_with("sha256:"));
    }
}
