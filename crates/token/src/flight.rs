//! Tokens kept in the token store and renewed once per expiry across every replica.
//!
//! A caller reads the stored record; while its access token is fresh it is handed out. When it
//! is due, the caller takes the connection's KV lock (one replica wins), reads the record again
//! (a replica that held the lock just before may have renewed it), renews it and stores the
//! result before anyone uses it; then releases the lock. Callers on other replicas keep using
//! the old access token while it is still valid, or poll the record until the holder is done
//! (at most [`Policy::wait_limit`]). Callers within one replica already queue on the slot's
//! mutex (see `cache`), so each replica has at most one caller here per connection.

use std::time::Duration;

use secrecy::ExposeSecret;

use crate::{
    Error,
    cache::usable_for,
    grant::{Grant, Issued, Kind},
    store::{Record, Store, now_ms},
};

/// How often a caller waiting for another replica's renewal reads the record again.
const POLL: Duration = Duration::from_millis(50);

/// When tokens are renewed and how failures are retried.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Renew this long before expiry; `None`: 10 % of the lifetime, at most 30 s.
    pub refresh_skew: Option<Duration>,
    /// Wait after the first failed renewal (unreachable server, 5xx, timeout); doubled per
    /// failure in a row.
    pub initial_backoff: Duration,
    /// Longest wait between renewal attempts.
    pub max_backoff: Duration,
    /// Longest a caller waits for another replica's renewal.
    pub wait_limit: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            refresh_skew: None,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            wait_limit: Duration::from_secs(20),
        }
    }
}

impl Policy {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A usable record for `connection`, renewed when due.
pub(crate) async fn get(grant: &Grant, store: &Store, policy: &Policy) -> Result<Record, Error> {
    let connection = grant.connection();
    let deadline = tokio::time::Instant::now() + policy.wait_limit;
    loop {
        let now = now_ms();
        let stored = store.load(connection).await?.map(|(record, _)| record);
        if let Some(record) = ready(grant, stored.as_ref(), now)? {
            return Ok(record);
        }
        if let Some(record) = &stored
            && now < record.retry_at_ms
        {
            return usable_or(record, now, || Error::BackingOff {
                connection: connection.to_owned(),
                retry_in_ms: record.retry_at_ms - now,
            });
        }
        if let Some(lock) = store.try_lock(connection).await? {
            let outcome = renew(grant, store, policy).await;
            store.unlock(connection, lock).await;
            return outcome;
        }
        // Another replica renews: its old token is still good while it does.
        if let Some(record) = &stored
            && record.usable_at(now)
        {
            return Ok(record.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Busy(connection.to_owned()));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn usable_or(record: &Record, now: i64, error: impl FnOnce() -> Error) -> Result<Record, Error> {
    if record.usable_at(now) {
        Ok(record.clone())
    } else {
        Err(error())
    }
}

/// The record when it needs no renewal; `Ok(None)` when it is due for one.
fn ready(grant: &Grant, record: Option<&Record>, now: i64) -> Result<Option<Record>, Error> {
    let consent = || Error::NeedsConsent(grant.connection().to_owned());
    let code_grant = matches!(grant.kind(), Kind::AuthorizationCode { .. });
    match record {
        None if code_grant => Err(consent()),
        None => Ok(None),
        // Only a person's consent can give an authorization-code connection a new grant; a
        // client-credentials connection asks again (a record marked by an older version too).
        Some(r) if r.needs_consent && code_grant => Err(consent()),
        Some(r) if r.fresh_at(now) => Ok(Some(r.clone())),
        // Without a refresh token there is nothing to renew with: use it while it lasts.
        Some(r) if code_grant && r.refresh_token.is_none() => usable_or(r, now, consent).map(Some),
        Some(_) => Ok(None),
    }
}

/// Renews the token while holding the lock.
async fn renew(grant: &Grant, store: &Store, policy: &Policy) -> Result<Record, Error> {
    let connection = grant.connection();
    let previous = store.load(connection).await?.map(|(record, _)| record);
    let now = now_ms();
    if let Some(record) = ready(grant, previous.as_ref(), now)? {
        return Ok(record);
    }
    let outcome = match (
        grant.kind(),
        previous.as_ref().and_then(|r| r.refresh_token.as_ref()),
    ) {
        (Kind::AuthorizationCode { .. }, Some(refresh_token)) => grant.refresh(refresh_token).await,
        _ => grant.request().await,
    };
    match outcome {
        Ok(issued) => {
            let record = record_from(issued, previous.as_ref(), policy, now_ms());
            // Stored before it is handed out: a rotated refresh token must never exist only in
            // memory, where a crash would lose the connection's consent.
            store.save(connection, &record).await?;
            tracing::info!(connection, "token renewed");
            Ok(record)
        }
        // A refused refresh token: consent is the only way back. For client credentials an
        // invalid_grant is a refusal like any other, and the next request may well succeed.
        Err(error)
            if error.is_invalid_grant()
                && previous.is_some()
                && matches!(grant.kind(), Kind::AuthorizationCode { .. }) =>
        {
            let record = Record {
                needs_consent: true,
                ..Record::default()
            };
            store.save(connection, &record).await?;
            tracing::warn!(
                connection,
                "refresh token refused, connection needs consent"
            );
            store
                .publish_needs_consent(connection, "invalid_grant")
                .await;
            Err(Error::NeedsConsent(connection.to_owned()))
        }
        Err(error) if error.is_transient() => {
            let mut record = previous.unwrap_or_default();
            record.failures = record.failures.saturating_add(1);
            let wait = policy.backoff(record.failures);
            record.retry_at_ms = now.saturating_add(ms(wait));
            store.save(connection, &record).await?;
            tracing::warn!(
                connection,
                failures = record.failures,
                retry_in_ms = ms(wait),
                error = error.chain(),
                "token renewal failed, old tokens kept"
            );
            usable_or(&record, now, || error)
        }
        Err(error) => Err(error),
    }
}

/// The record for tokens just issued; a response without a refresh token keeps the old one.
pub(crate) fn record_from(
    issued: Issued,
    previous: Option<&Record>,
    policy: &Policy,
    now: i64,
) -> Record {
    let usable = usable_for(issued.expires_in, policy.refresh_skew);
    Record {
        access_token: Some(issued.access_token.expose_secret().to_owned()),
        token_type: issued.token_type,
        expires_at_ms: issued
            .expires_in
            .map_or(0, |lifetime| now.saturating_add(ms(lifetime)).max(1)),
        stale_at_ms: now.saturating_add(ms(usable)),
        refresh_token: issued
            .refresh_token
            .map(|t| t.expose_secret().to_owned())
            .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
        needs_consent: false,
        failures: 0,
        retry_at_ms: 0,
    }
}

/// Drops the stored access token of `connection` when it is `access_token`; true when it was.
pub(crate) async fn invalidate(
    store: &Store,
    connection: &str,
    access_token: &str,
) -> Result<bool, Error> {
    let Some((mut record, revision)) = store.load(connection).await? else {
        return Ok(false);
    };
    if record.access_token.as_deref() != Some(access_token) {
        return Ok(false);
    }
    record.access_token = None;
    record.stale_at_ms = 0;
    // Only if unchanged: a replica that renewed meanwhile stored a token that is not refused.
    store.save_if(connection, &record, revision).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let p = Policy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..Policy::default()
        };
        let secs: Vec<u64> = (1..=5).map(|f| p.backoff(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn omitted_refresh_token_keeps_the_old_one_and_a_rotated_one_replaces_it() {
        let issue = |refresh: Option<&str>| Issued {
            access_token: "a".to_owned().into(),
            token_type: "Bearer".to_owned(),
            expires_in: Some(Duration::from_secs(100)),
            refresh_token: refresh.map(|r| r.to_owned().into()),
        };
        let old = Record {
            refresh_token: Some("r1".to_owned()),
            failures: 3,
            ..Record::default()
        };
        let p = Policy::default();
        let kept = record_from(issue(None), Some(&old), &p, 1_000);
        assert_eq!(kept.refresh_token.as_deref(), Some("r1"));
        assert_eq!(kept.failures, 0);
        assert_eq!(kept.expires_at_ms, 101_000);
        assert_eq!(kept.stale_at_ms, 91_000);
        let rotated = record_from(issue(Some("r2")), Some(&old), &p, 1_000);
        assert_eq!(rotated.refresh_token.as_deref(), Some("r2"));
    }
}
