//! One poller per source across every ingress replica: a lease in `HOOKYARD_POLL_LEASES`.
//!
//! The key is the source's name, the value the holder's id. A replica takes a free key (absent,
//! deleted, or expired) with `Nats-Expected-Last-Subject-Sequence` set to its last revision, so
//! of two replicas trying at once one wins; it writes it with a per-message TTL (`Nats-TTL`) and
//! renews it, expecting its own last revision, every third of the TTL while it polls. A holder
//! that dies stops renewing and the key expires after the TTL; the others, which look at it
//! every quarter of the TTL, then take it. A holder that fails to renew for a whole TTL (NATS
//! unreachable) or finds the key taken stops polling at once. A holder that stops gracefully
//! deletes the key so another replica takes over without waiting.
//!
//! The lease keeps partner requests to one poller; correctness does not rest on it: a poller
//! that lost its lease mid-poll stores records the stream refuses as known, and its cursor write
//! expects a revision that is gone.

use std::time::Duration;

use async_nats::{
    HeaderMap, HeaderValue,
    header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_TTL},
    jetstream::{self, context::PublishErrorKind, kv},
};
use bytes::Bytes;

/// The lease bucket and who this replica is.
#[derive(Clone)]
pub struct Leases {
    store: kv::Store,
    js: jetstream::Context,
    put_prefix: String,
    holder: String,
    ttl: Duration,
}

/// A lease this replica holds.
#[derive(Debug)]
pub struct Lease {
    key: String,
    revision: u64,
}

/// A lease operation failed for a reason other than someone else holding it.
#[derive(Debug, thiserror::Error)]
#[error("lease bucket unavailable: {0}")]
pub struct LeaseError(String);

impl Leases {
    /// Leases in `store` (the bucket named by the topology), held as `holder` for `ttl`.
    pub fn new(
        store: kv::Store,
        js: jetstream::Context,
        bucket: &str,
        holder: String,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            js,
            put_prefix: format!("$KV.{bucket}."),
            holder,
            ttl,
        }
    }

    /// The TTL of a lease.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease of `source` when it is free; `None` while another replica holds it.
    pub async fn try_take(&self, source: &str) -> Result<Option<Lease>, LeaseError> {
        let entry = self
            .store
            .entry(source)
            .await
            .map_err(|e| LeaseError(e.to_string()))?;
        let expected = match entry {
            None => 0,
            Some(e) if e.operation != kv::Operation::Put => e.revision,
            Some(_) => return Ok(None),
        };
        Ok(self.write(source, expected).await?.map(|revision| Lease {
            key: source.to_owned(),
            revision,
        }))
    }

    /// Renews `lease`; false when another replica holds it now.
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool, LeaseError> {
        match self.write(&lease.key, lease.revision).await? {
            Some(revision) => {
                lease.revision = revision;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives `lease` up so another replica takes over at once (best effort: it expires anyway).
    pub async fn release(&self, lease: Lease) {
        if let Err(error) = self
            .store
            .delete_expect_revision(&lease.key, Some(lease.revision))
            .await
        {
            tracing::debug!(source = %lease.key, %error, "lease not released, it expires on its own");
        }
    }

    /// Writes the holder under `key` if its last revision is `expected`; the new revision, or
    /// `None` when another writer came first.
    async fn write(&self, key: &str, expected: u64) -> Result<Option<u64>, LeaseError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            HeaderValue::from(expected),
        );
        headers.insert(
            NATS_MESSAGE_TTL,
            HeaderValue::from(self.ttl.as_secs().max(1)),
        );
        let ack = self
            .js
            .publish_with_headers(
                format!("{}{key}", self.put_prefix),
                headers,
                Bytes::from(self.holder.clone()),
            )
            .await
            .map_err(|e| LeaseError(e.to_string()))?;
        match ack.await {
            // A KV entry's revision is its stream sequence.
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(LeaseError(e.to_string())),
        }
    }
}
