//! Outbound settings of a connection beyond its address and auth: which private ranges it may
//! reach, redirects, TLS identities and trusted CAs, retries, and the circuit breaker. Egress
//! applies them; the checks that need no file or network are here.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{Connection, inbound::parse_cidr, secret::Secret};

/// Largest `max_response_bytes` (and its default): a body must fit a gRPC message.
pub const MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;

/// Most redirect hops a connection may follow.
pub const MAX_REDIRECTS: u32 = 10;

/// TLS settings of a connection (PEM files). There is no switch that disables verification.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionTls {
    /// CA bundle (PEM file path) trusted for the partner's certificate.
    pub ca: Option<PathBuf>,
    /// Whether `ca` `extend`s the built-in roots (default) or `replace`s them.
    #[serde(default)]
    pub ca_mode: CaMode,
    /// Client certificate chain for mutual TLS (PEM file path); needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Private key of `client_cert` (PEM, a secret reference such as `${file:/run/secrets/key.pem}`).
    pub client_key: Option<Secret>,
}

/// How a connection's CA bundle combines with the built-in (Mozilla) roots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaMode {
    /// Trust the bundle and the built-in roots.
    #[default]
    Extend,
    /// Trust only the bundle.
    Replace,
}

/// Retries within one call, for idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, and
/// POST or PATCH carrying an idempotency key) on connect errors, timeouts, 429, 502, 503, 504.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// HTTP attempts per call, the first included (default 3; 1 disables retries).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff cap before the first retry (default `200ms`); doubles per retry, full jitter.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Largest backoff (default `5s`).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Longest `Retry-After` waited for (default `10s`); a longer one returns the response as
    /// it is, so the caller's own retry schedule takes over.
    #[serde(default = "default_max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_retry_after: default_max_retry_after(),
        }
    }
}

/// A circuit breaker: after `failures` consecutive failed attempts (no response, or a 5xx)
/// calls fail fast with UNAVAILABLE for `cool_down`, then one probe call decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breaker {
    /// Consecutive failed attempts that open the breaker (default 5; 0 disables it).
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long an open breaker rejects calls before one probe is let through (default `30s`).
    #[serde(default = "default_cool_down", with = "humantime_serde")]
    pub cool_down: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            failures: default_failures(),
            cool_down: default_cool_down(),
        }
    }
}

fn default_max_attempts() -> u32 {
    3
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_max_retry_after() -> Duration {
    Duration::from_secs(10)
}
fn default_failures() -> u32 {
    5
}
fn default_cool_down() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_max_response_bytes() -> u64 {
    MAX_RESPONSE_BYTES
}

/// Checks the outbound settings of the connection at `key`; `push(key, message)` reports.
pub(super) fn check(push: &mut impl FnMut(String, String), key: &str, conn: &Connection) {
    for (n, text) in conn.allow_private.iter().enumerate() {
        if let Err(message) = parse_cidr(text) {
            push(format!("{key}.allow_private[{n}]"), message);
        }
    }
    if conn.follow_redirects > MAX_REDIRECTS {
        push(
            format!("{key}.follow_redirects"),
            format!("must be at most {MAX_REDIRECTS}"),
        );
    }
    if let Some(tls) = &conn.tls {
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            push(
                format!("{key}.tls"),
                "set client_cert and client_key together".to_owned(),
            );
        }
        if tls.ca_mode == CaMode::Replace && tls.ca.is_none() {
            push(
                format!("{key}.tls.ca"),
                "must be set when ca_mode = \"replace\"".to_owned(),
            );
        }
    }
    let retry = &conn.retry;
    if retry.max_attempts == 0 {
        push(
            format!("{key}.retry.max_attempts"),
            "must be at least 1".to_owned(),
        );
    }
    if retry.initial_backoff > retry.max_backoff {
        push(
            format!("{key}.retry.initial_backoff"),
            "must not exceed max_backoff".to_owned(),
        );
    }
    if let Some(limit) = &conn.rate_limit {
        if limit.per_second == 0 {
            push(
                format!("{key}.rate_limit.per_second"),
                "must be at least 1".to_owned(),
            );
        }
        if limit.burst == Some(0) {
            push(
                format!("{key}.rate_limit.burst"),
                "must be at least 1".to_owned(),
            );
        }
    }
    if conn.max_concurrency == Some(0) {
        push(
            format!("{key}.max_concurrency"),
            "must be at least 1".to_owned(),
        );
    }
    if conn.breaker.failures > 0 && conn.breaker.cool_down.is_zero() {
        push(
            format!("{key}.breaker.cool_down"),
            "must be greater than 0".to_owned(),
        );
    }
    if conn.max_response_bytes == 0 || conn.max_response_bytes > MAX_RESPONSE_BYTES {
        push(
            format!("{key}.max_response_bytes"),
            format!("must be between 1 and {MAX_RESPONSE_BYTES}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Integration;

    fn problem_keys(text: &str) -> Vec<String> {
        match Integration::parse(text, &|_| Some("v".to_owned())) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(|p| p.key.clone()).collect(),
        }
    }

    #[test]
    fn outbound_settings_parse_with_their_defaults() {
        let text = r#"
[connections.c]
base_url = "https://x.example"
allow_private = ["10.0.0.0/8", "fd00::1"]
follow_redirects = 2
tls = { ca = "/etc/ca.pem", ca_mode = "replace", client_cert = "/etc/c.pem", client_key = "${env:K}" }
retry = { max_attempts = 5 }
rate_limit = { per_second = 10 }
max_concurrency = 4
"#;
        assert_eq!(
            problem_keys_unresolved(text),
            ["connections.c.tls.client_key"]
        );
        let i = Integration::parse(text, &|_| Some("pem".to_owned())).expect("valid");
        let c = &i.connections["c"];
        assert_eq!(c.follow_redirects, 2);
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.max_retry_after, Duration::from_secs(10));
        assert_eq!(c.breaker.failures, 5);
        assert_eq!(c.max_response_bytes, MAX_RESPONSE_BYTES);
        assert_eq!(c.tls.as_ref().map(|t| t.ca_mode), Some(CaMode::Replace));
    }

    /// Problems when no secret resolves.
    fn problem_keys_unresolved(text: &str) -> Vec<String> {
        match Integration::parse(text, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(|p| p.key.clone()).collect(),
        }
    }

    #[test]
    fn outbound_mistakes_are_named_by_key() {
        let text = r#"
[connections.c]
base_url = "https://x.example"
allow_private = ["10.0.0.0/40"]
follow_redirects = 11
tls = { client_cert = "/etc/c.pem", ca_mode = "replace" }
retry = { max_attempts = 0, initial_backoff = "10s" }
rate_limit = { per_second = 0 }
max_concurrency = 0
breaker = { cool_down = "0s" }
max_response_bytes = 0
"#;
        let keys = problem_keys(text);
        for key in [
            "connections.c.allow_private[0]",
            "connections.c.follow_redirects",
            "connections.c.tls",
            "connections.c.tls.ca",
            "connections.c.retry.max_attempts",
            "connections.c.retry.initial_backoff",
            "connections.c.rate_limit.per_second",
            "connections.c.max_concurrency",
            "connections.c.breaker.cool_down",
            "connections.c.max_response_bytes",
        ] {
            assert!(
                keys.contains(&key.to_owned()),
                "{key} missing from {keys:?}"
            );
        }
        let unknown = problem_keys(
            "[connections.c]\nbase_url = \"https://x.example\"\ntls = { verify = false }\n",
        );
        assert!(!unknown.is_empty(), "no switch that disables verification");
    }
}
