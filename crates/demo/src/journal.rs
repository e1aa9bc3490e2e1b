//! The record of partner calls and token requests that `/_demo/calls` shows, bounded to the
//! newest `max_calls` calls.
//!
//! A call keeps what a demo or test asserts on: method, path, query, idempotency key, the kind
//! of credentials and the body. It never holds the `Authorization` header or any secret.

use std::{
    collections::VecDeque,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// How a partner call authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// A bearer token this server issued and that had not expired.
    Bearer,
    /// The configured basic user and password.
    Basic,
    /// No `Authorization` header.
    None,
    /// Any other `Authorization` header: unknown or expired token, wrong password, bad syntax.
    Invalid,
}

impl AuthKind {
    /// The name shown in `/_demo/calls` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::None => "none",
            Self::Invalid => "invalid",
        }
    }

    /// Whether the partner accepts a call authenticated this way.
    pub fn is_accepted(self) -> bool {
        matches!(self, Self::Bearer | Self::Basic)
    }
}

/// A partner call as received, before it is numbered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub idempotency_key: Option<String>,
    pub auth: AuthKind,
    /// The JSON body, or its text (lossy UTF-8) when it is not JSON; `null` when empty or unread.
    pub body: serde_json::Value,
}

/// One recorded partner call.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub idempotency_key: Option<String>,
    pub auth: AuthKind,
    pub body: serde_json::Value,
    /// The status the partner answered.
    pub status: u16,
    pub received_at_ms: u64,
}

/// What `GET /_demo/calls` returns.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub token_requests: u64,
    /// Oldest first.
    pub calls: Vec<Call>,
}

/// Recorded calls, newest last, and the token request counter.
#[derive(Debug)]
pub struct Journal {
    calls: VecDeque<Call>,
    max_calls: usize,
    last_seq: u64,
    token_requests: u64,
}

impl Journal {
    /// An empty journal keeping at most `max_calls` calls.
    pub fn new(max_calls: usize) -> Self {
        Self {
            calls: VecDeque::new(),
            max_calls,
            last_seq: 0,
            token_requests: 0,
        }
    }

    /// Numbers and records a call, dropping the oldest past `max_calls`; returns its `seq`.
    pub fn record(&mut self, received: Received, status: u16) -> u64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        if self.max_calls == 0 {
            return seq;
        }
        while self.calls.len() >= self.max_calls {
            self.calls.pop_front();
        }
        self.calls.push_back(Call {
            seq,
            method: received.method,
            path: received.path,
            query: received.query,
            idempotency_key: received.idempotency_key,
            auth: received.auth,
            body: received.body,
            status,
            received_at_ms: unix_millis(),
        });
        seq
    }

    /// Counts a request to the token endpoint, whatever its outcome.
    pub fn count_token_request(&mut self) {
        self.token_requests += 1;
    }

    /// The calls whose path starts with `path_prefix` (all when `None`), oldest first.
    pub fn snapshot(&self, path_prefix: Option<&str>) -> Snapshot {
        let calls = self
            .calls
            .iter()
            .filter(|call| path_prefix.is_none_or(|prefix| call.path.starts_with(prefix)))
            .cloned()
            .collect();
        Snapshot {
            token_requests: self.token_requests,
            calls,
        }
    }

    /// Forgets every call and restarts both the sequence and the token request counter.
    pub fn clear(&mut self) {
        self.calls.clear();
        self.last_seq = 0;
        self.token_requests = 0;
    }
}

/// The body as shown in `/_demo/calls`: parsed JSON when it is JSON, else its text.
pub fn body_value(body: &[u8]) -> serde_json::Value {
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn received(path: &str) -> Received {
        Received {
            method: "POST".into(),
            path: path.into(),
            query: None,
            idempotency_key: None,
            auth: AuthKind::None,
            body: serde_json::Value::Null,
        }
    }

    #[test]
    fn keeps_newest_calls_up_to_the_bound() {
        let mut journal = Journal::new(2);
        for path in ["/a", "/b", "/c"] {
            journal.record(received(path), 201);
        }
        let seqs: Vec<u64> = journal.snapshot(None).calls.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [2, 3]);
    }

    #[test]
    fn filters_by_path_prefix_and_clears() {
        let mut journal = Journal::new(10);
        for path in ["/v1/orders", "/v1/customers", "/v1/orders/7"] {
            journal.record(received(path), 201);
        }
        journal.count_token_request();
        let orders = journal.snapshot(Some("/v1/orders"));
        assert_eq!(orders.calls.len(), 2);
        assert_eq!(orders.token_requests, 1);
        journal.clear();
        assert!(journal.snapshot(None).calls.is_empty());
        assert_eq!(journal.snapshot(None).token_requests, 0);
        assert_eq!(journal.record(received("/a"), 201), 1);
    }

    #[test]
    fn body_is_json_when_it_parses_else_text() {
        assert_eq!(body_value(br#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(body_value(b"a=1"), json!("a=1"));
        assert_eq!(body_value(b"\xff"), json!("\u{fffd}"));
        assert_eq!(body_value(b""), serde_json::Value::Null);
    }
}
