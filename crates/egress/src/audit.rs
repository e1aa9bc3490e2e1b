//! The audit trail: one JSON record per outbound attempt on
//! `<prefix>.audit.egress.<connection>.<event id>` (see `Topology::audit_egress_subject`), in the
//! JetStream stream `HOOKYARD_AUDIT` — connection, method, URL with secrets redacted, status or
//! error, latency, attempt number, event id and handler. Header values and bodies are never recorded.
//!
//! Records go through a bounded queue to one publishing task, which takes whatever is waiting
//! (up to [`BATCH`]) and stores it as one atomic batch ([`hookyard_core::batch::store_each`]),
//! so under load the audit keeps up with the calls at one commit per batch instead of one
//! write, and under `sync_interval: always` one fsync, per record. A record
//! JetStream did not store is published again after a pause (growing to 2 s) until it is, so a
//! short NATS or stream outage loses nothing. Recording never fails or slows a call: only when
//! the queue is full (an outage longer than it holds) is a record dropped, with a warning.
//!
//! Start-up never waits for NATS: the publishing task creates or updates the stream with
//! backoff until JetStream answers (NATS may start after egress), and only then publishes.
//! Records of calls made meanwhile wait in the queue, so they are stored once the stream
//! exists, as long as the queue does not fill. [`Audit::ready`] says when the stream is set up;
//! egress reports NOT_SERVING until then.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use bytes::Bytes;
use hookyard_core::streams::Topology;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use url::Url;

/// Records waiting to be published; more are dropped.
const QUEUE: usize = 4096;
/// Records published at once, before waiting for their acks.
const BATCH: usize = 256;
/// Pause before publishing again what was not stored; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Put in place of a redacted value.
pub use hookyard_core::redact::REDACTED;

/// Where egress sends its audit records.
#[derive(Debug, Clone)]
pub struct Audit {
    queue: mpsc::Sender<(String, Bytes)>,
    topology: Topology,
    ready: watch::Receiver<bool>,
}

impl Audit {
    /// Starts the publishing task, which first creates or updates the audit stream on `client`,
    /// retrying until it succeeds or `stop` is cancelled.
    pub fn start(client: async_nats::Client, topology: &Topology, stop: CancellationToken) -> Self {
        let js = jetstream::new(client);
        let (queue, mut records) = mpsc::channel::<(String, Bytes)>(QUEUE);
        let (set_ready, ready) = watch::channel(false);
        let setup = topology.clone();
        tokio::spawn(async move {
            let created = hookyard_core::retry::until_ok(
                &stop,
                || setup.ensure_audit(&js),
                |attempt, error: &hookyard_core::streams::StreamSetupError| {
                    tracing::warn!(attempt, %error, "audit stream not ready, retrying");
                },
            )
            .await;
            if created.is_none() {
                return;
            }
            tracing::info!(stream = %setup.audit_stream(), "audit stream ready");
            set_ready.send_replace(true);
            let mut batch = Vec::with_capacity(BATCH);
            while records.recv_many(&mut batch, BATCH).await > 0 {
                store_all(&js, &mut batch, &stop).await;
            }
        });
        Self {
            queue,
            topology: topology.clone(),
            ready,
        }
    }

    /// Waits until the audit stream is set up; returns at once when it is. Never returns when
    /// the publishing task was stopped before.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        if ready.wait_for(|ready| *ready).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub(crate) fn record(&self, record: &Record<'_>) {
        let Ok(bytes) = serde_json::to_vec(record) else {
            return;
        };
        let subject = self
            .topology
            .audit_egress_subject(record.connection, record.event_id.unwrap_or_default());
        if self.queue.try_send((subject, bytes.into())).is_err() {
            tracing::warn!(
                connection = record.connection,
                "audit queue full, record dropped"
            );
        }
    }
}

/// Publishes every record of `batch` at once and waits for the acks; what was not stored is
/// published again after a pause, until everything is or `stop` is cancelled. Leaves `batch`
/// empty.
async fn store_all(
    js: &jetstream::Context,
    batch: &mut Vec<(String, Bytes)>,
    stop: &CancellationToken,
) {
    let mut pause = RETRY_FIRST;
    loop {
        let results = hookyard_core::batch::store_each(&js.client(), batch).await;
        let mut error = None;
        let failed: Vec<(String, Bytes)> = batch
            .drain(..)
            .zip(results)
            .filter_map(|(record, result)| {
                result
                    .err()
                    .map(|e| (record, hookyard_core::telemetry::report(&e)))
            })
            .map(|(record, e)| {
                error.get_or_insert(e);
                record
            })
            .collect();
        let Some(error) = error else {
            return;
        };
        tracing::warn!(
            records = failed.len(),
            error,
            retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "audit records not stored yet, publishing them again"
        );
        *batch = failed;
        tokio::select! {
            () = stop.cancelled() => {
                tracing::warn!(records = batch.len(), "stopping: audit records not stored");
                batch.clear();
                return;
            }
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// One outbound attempt.
#[derive(Debug, Serialize)]
pub(crate) struct Record<'a> {
    pub connection: &'a str,
    pub method: &'a str,
    /// The URL with user info and secret query values replaced by `REDACTED`.
    pub url: String,
    /// 1 for the first attempt of a call.
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<&'a str>,
    /// The handler the call was made for, when a worker made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<&'a str>,
    /// The partner's status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The gRPC code name of the failure, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
    /// When the attempt started, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Milliseconds since the Unix epoch of `at`.
pub(crate) fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// `url` with its user info, the connection's `query` auth parameter and every query value
/// whose name looks secret (key, token, secret, password, sig, code, …) redacted.
pub(crate) fn redact(url: &Url, auth_parameter: Option<&str>) -> String {
    let mut redacted = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        let _ = redacted.set_username(REDACTED);
        let _ = redacted.set_password(None);
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let secret = auth_parameter == Some(name.as_ref())
                    || hookyard_core::redact::is_secret_query_name(&name);
                let value = if secret {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        redacted.query_pairs_mut().clear().extend_pairs(pairs);
    }
    redacted.into()
}

/// The event a call is made for: `event_id`, else the idempotency key up to its first `:`
/// (a worker's key is `<event id>:<handler>`).
pub(crate) fn event_id<'a>(event_id: &'a str, idempotency_key: &'a str) -> Option<&'a str> {
    if !event_id.is_empty() {
        return Some(event_id);
    }
    idempotency_key
        .split(':')
        .next()
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_the_url_are_redacted() {
        let url = Url::parse(
            "https://user:pw@api.example/v1/x?page=2&api_key=k1&Access_Token=t1&sig=s&custom=c1",
        )
        .expect("url");
        let text = redact(&url, Some("custom"));
        for secret in ["pw", "k1", "t1", "=s&", "c1", "user"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("page=2"), "{text}");
        assert!(
            text.starts_with("https://REDACTED@api.example/v1/x?"),
            "{text}"
        );
    }

    #[test]
    fn event_id_falls_back_to_the_idempotency_key() {
        assert_eq!(event_id("e1", "e2:h"), Some("e1"));
        assert_eq!(event_id("", "e2:h"), Some("e2"));
        assert_eq!(event_id("", ""), None);
    }
}
