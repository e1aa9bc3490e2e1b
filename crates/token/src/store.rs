//! Token records, consent states and refresh locks in the `HOOKYARD_TOKENS` KV bucket.
//!
//! Keys: `token.<connection>` holds a connection's [`Record`], sealed with [`Keys`];
//! `flow.<state>` a pending consent ([`Flow`], sealed, with a TTL, taken once);
//! `lock.<connection>` the replica refreshing that connection (with a TTL, so a crashed holder
//! frees it). Locks and flows are written with an expected last revision, so exactly one
//! writer wins.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_nats::{
    HeaderMap, HeaderValue,
    jetstream::{self, kv},
};
use hookyard_core::streams::Topology;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Error, keys::Keys};

/// How long a refresh lock lives when its holder never releases it.
pub(crate) const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a consent may take, from Connect to the callback.
pub(crate) const FLOW_TTL: Duration = Duration::from_secs(600);

/// What is stored for a connection. Never printed: it holds tokens.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The access token, absent after invalidation or before the first grant.
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub token_type: String,
    /// Unix ms when the access token expires; 0 when the server did not say.
    #[serde(default)]
    pub expires_at_ms: i64,
    /// Unix ms from which the access token is renewed (expiry minus the skew).
    #[serde(default)]
    pub stale_at_ms: i64,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Set when the authorization server refused the refresh token: a person must consent again.
    #[serde(default)]
    pub needs_consent: bool,
    /// Failed renewals in a row (unreachable server, 5xx, timeout).
    #[serde(default)]
    pub failures: u32,
    /// Unix ms before which no replica asks the authorization server again.
    #[serde(default)]
    pub retry_at_ms: i64,
}

impl Record {
    /// Whether the access token may be handed out at `now_ms` at all (fresh or not).
    pub(crate) fn usable_at(&self, now_ms: i64) -> bool {
        self.access_token.is_some()
            && !self.needs_consent
            && (self.expires_at_ms == 0 || now_ms < self.expires_at_ms)
    }

    /// Whether the access token is fresh at `now_ms` (no renewal due).
    pub(crate) fn fresh_at(&self, now_ms: i64) -> bool {
        self.usable_at(now_ms) && now_ms < self.stale_at_ms
    }
}

/// A consent in progress, between Connect and the callback.
#[derive(Serialize, Deserialize)]
pub(crate) struct Flow {
    pub connection: String,
    /// The PKCE code verifier (RFC 7636).
    pub verifier: String,
}

/// The token bucket of one namespace.
pub(crate) struct Store {
    kv: kv::Store,
    js: jetstream::Context,
    nats: async_nats::Client,
    /// `$KV.<bucket>.`, for writes with a TTL and an expected revision.
    put_prefix: String,
    keys: Arc<Keys>,
    needs_consent_subject: String,
    /// Identifies this process in the locks it holds.
    holder: String,
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A random URL-safe token of `bytes` random bytes.
pub(crate) fn random_id(bytes: usize) -> String {
    use base64::Engine as _;
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system provides random bytes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn nats_error(what: &'static str) -> impl FnOnce(async_nats::Error) -> Error {
    move |source| Error::Store { what, source }
}

impl Store {
    /// Creates or updates the bucket and returns the store.
    pub(crate) async fn open(
        nats: async_nats::Client,
        topology: &Topology,
        keys: Arc<Keys>,
    ) -> Result<Self, Error> {
        let js = jetstream::new(nats.clone());
        let kv = topology
            .ensure_tokens(&js)
            .await
            .map_err(|e| Error::Store {
                what: "create the token bucket",
                source: Box::new(e),
            })?;
        Ok(Self {
            kv,
            js,
            nats,
            put_prefix: format!("$KV.{}.", topology.tokens_bucket()),
            keys,
            needs_consent_subject: topology.token_needs_consent_subject(),
            holder: random_id(12),
        })
    }

    fn token_key(connection: &str) -> String {
        format!("token.{connection}")
    }

    async fn read<T: DeserializeOwned>(
        &self,
        key: &str,
        connection: &str,
    ) -> Result<Option<(T, u64, u32)>, Error> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| nats_error("read the token bucket")(e.into()))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let (plain, version) =
            self.keys
                .open(key, &entry.value)
                .map_err(|source| Error::Undecryptable {
                    connection: connection.to_owned(),
                    source,
                })?;
        let value = serde_json::from_slice(&plain).map_err(|_| Error::CorruptRecord {
            connection: connection.to_owned(),
        })?;
        Ok(Some((value, entry.revision, version)))
    }

    fn seal<T: Serialize>(&self, key: &str, value: &T) -> bytes::Bytes {
        let plain = serde_json::to_vec(value).expect("records serialise");
        self.keys.seal(key, &plain).into()
    }

    /// The stored record of `connection` and its revision.
    pub(crate) async fn load(&self, connection: &str) -> Result<Option<(Record, u64)>, Error> {
        let key = Self::token_key(connection);
        let found = self.read::<Record>(&key, connection).await?;
        Ok(found.map(|(record, revision, _)| (record, revision)))
    }

    /// Stores `record` for `connection`, sealed with the current key (so a record of an older
    /// key version is re-encrypted on its next write).
    pub(crate) async fn save(&self, connection: &str, record: &Record) -> Result<u64, Error> {
        let key = Self::token_key(connection);
        self.kv
            .put(&key, self.seal(&key, record))
            .await
            .map_err(|e| nats_error("write a token record")(e.into()))
    }

    /// Stores `record` only if the stored one is still at `revision` (0: none stored); false
    /// when another writer came first.
    pub(crate) async fn save_if(
        &self,
        connection: &str,
        record: &Record,
        revision: u64,
    ) -> Result<bool, Error> {
        let key = Self::token_key(connection);
        self.publish_expecting(&key, self.seal(&key, record), revision, None)
            .await
    }

    /// Publishes `value` under `key` if its last revision is `expected`, with an optional TTL.
    /// `kv::Store::create_with_ttl` drops the TTL when the key holds a delete marker, so the
    /// write is made here with the same headers.
    async fn publish_expecting(
        &self,
        key: &str,
        value: bytes::Bytes,
        expected: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            HeaderValue::from(expected),
        );
        if let Some(ttl) = ttl {
            headers.insert(
                async_nats::header::NATS_MESSAGE_TTL,
                HeaderValue::from(ttl.as_secs().max(1)),
            );
        }
        let ack = self
            .js
            .publish_with_headers(format!("{}{key}", self.put_prefix), headers, value)
            .await
            .map_err(|e| nats_error("write the token bucket")(e.into()))?;
        match ack.await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                Ok(false)
            }
            Err(e) => Err(nats_error("write the token bucket")(e.into())),
        }
    }

    /// Last revision of `key` when it is free (absent, deleted, purged or expired), else
    /// `None`.
    async fn free_revision(&self, key: &str) -> Result<Option<u64>, Error> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| nats_error("read the token bucket")(e.into()))?;
        Ok(match entry {
            None => Some(0),
            Some(e) if e.operation == kv::Operation::Put => None,
            Some(e) => Some(e.revision),
        })
    }

    /// Takes the refresh lock of `connection`; its revision, or `None` when another replica
    /// holds it.
    pub(crate) async fn try_lock(&self, connection: &str) -> Result<Option<u64>, Error> {
        let key = format!("lock.{connection}");
        let Some(expected) = self.free_revision(&key).await? else {
            return Ok(None);
        };
        let value = bytes::Bytes::from(self.holder.clone());
        if !self
            .publish_expecting(&key, value, expected, Some(LOCK_TTL))
            .await?
        {
            return Ok(None);
        }
        // The revision is read back: the publish ack's sequence is the stream's.
        let entry = self
            .kv
            .entry(&key)
            .await
            .map_err(|e| nats_error("read the token bucket")(e.into()))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put && e.value == self.holder.as_bytes())
            .map(|e| e.revision))
    }

    /// Releases a lock taken with [`Self::try_lock`]; a lock that expired and was taken by
    /// another replica meanwhile is left alone.
    pub(crate) async fn unlock(&self, connection: &str, revision: u64) {
        let key = format!("lock.{connection}");
        if let Err(error) = self.kv.delete_expect_revision(&key, Some(revision)).await {
            tracing::debug!(connection, %error, "refresh lock not released, it expires on its own");
        }
    }

    /// Stores a pending consent under `state`, for [`FLOW_TTL`].
    pub(crate) async fn put_flow(&self, state: &str, flow: &Flow) -> Result<(), Error> {
        let key = format!("flow.{state}");
        let sealed = self.seal(&key, flow);
        if self
            .publish_expecting(&key, sealed, 0, Some(FLOW_TTL))
            .await?
        {
            Ok(())
        } else {
            Err(Error::Store {
                what: "store a consent state",
                source: "state already exists".into(),
            })
        }
    }

    /// Takes the pending consent of `state` once: the first caller gets it, later ones (and
    /// unknown or expired states) get `None`.
    pub(crate) async fn take_flow(&self, state: &str) -> Result<Option<Flow>, Error> {
        let key = format!("flow.{state}");
        let Some((flow, revision, _)) = self.read::<Flow>(&key, "(consent state)").await? else {
            return Ok(None);
        };
        match self.kv.delete_expect_revision(&key, Some(revision)).await {
            Ok(()) => Ok(Some(flow)),
            // Another callback with the same state deleted it first.
            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(nats_error("consume a consent state")(e.into())),
        }
    }

    /// Tells subscribers that `connection` needs a person's consent again.
    pub(crate) async fn publish_needs_consent(&self, connection: &str, reason: &str) {
        let body = serde_json::json!({ "connection": connection, "reason": reason });
        let payload = bytes::Bytes::from(body.to_string());
        let published = self
            .nats
            .publish(self.needs_consent_subject.clone(), payload)
            .await;
        let flushed = match published {
            Ok(()) => self.nats.flush().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = flushed {
            tracing::warn!(connection, error, "cannot publish the needs-consent event");
        }
    }
}
