//! Tokens, one slot per OAuth 2.0 connection, with single-flight fetching.
//!
//! A slot's mutex is held while its token is fetched, so callers that arrive meanwhile wait for
//! that fetch and take its outcome instead of sending their own request. A caller whose request
//! is cancelled while it fetches drops the fetch; the next waiter then fetches.
//!
//! Without a token store the token lives in the slot (memory). With one, the slot's mutex
//! still orders this replica's callers, and the token lives in the store (see `flight`).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hookyard_core::Integration;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::{
    Error,
    flight::{self, Policy},
    grant::{Grant, Issued, Kind},
    store::{Record, Store},
};

/// How long a token without `expires_in` is used before it is fetched again.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Upper bound of the safety margin before expiry.
const MAX_SKEW: Duration = Duration::from_secs(30);

/// A token handed to callers.
#[derive(Clone)]
pub(crate) struct Token {
    pub access_token: SecretString,
    pub token_type: String,
    /// Unix milliseconds after which it must not be used; 0 when unknown.
    pub expires_at_ms: i64,
}

struct Cached {
    token: Token,
    stale_at: Instant,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Outcome of the last fetch when it failed, for the callers that waited for it.
    failure: Option<Arc<Error>>,
}

struct Slot {
    grant: Grant,
    state: Mutex<State>,
    /// Fetches completed, changed only with `state` locked: a waiter that sees it move knows a
    /// fetch finished while it waited.
    fetches: AtomicU64,
}

/// The tokens of every OAuth 2.0 connection of an integration file.
pub(crate) struct Tokens {
    slots: BTreeMap<String, Slot>,
    /// Connections that exist but use another kind of auth.
    others: BTreeSet<String>,
    /// Where tokens are kept across restarts and replicas.
    keeping: Keeping,
    policy: Policy,
}

/// Where tokens are kept.
enum Keeping {
    /// In this process only.
    Memory,
    /// In the token store, once it is open (see [`Tokens::open_store`]); until then every
    /// request fails with [`Error::StoreNotReady`].
    Store(OnceLock<Arc<Store>>),
}

impl Tokens {
    /// Tokens kept in the token store when `stored` (handed over later with
    /// [`Self::open_store`]), else in memory (then authorization code connections are refused
    /// at start).
    pub(crate) fn new(
        integration: &Integration,
        stored: bool,
        policy: Policy,
    ) -> Result<Self, Error> {
        let mut slots = BTreeMap::new();
        let mut others = BTreeSet::new();
        for (name, connection) in &integration.connections {
            if !connection.auth.is_oauth2() {
                others.insert(name.clone());
                continue;
            }
            let http = crate::grant::http_client(name, connection)?;
            match Grant::new(name, &connection.auth, http)? {
                Some(grant) => {
                    if !stored && matches!(grant.kind(), Kind::AuthorizationCode { .. }) {
                        return Err(Error::NeedsStore(name.clone()));
                    }
                    let slot = Slot {
                        grant,
                        state: Mutex::default(),
                        fetches: AtomicU64::new(0),
                    };
                    slots.insert(name.clone(), slot);
                }
                None => {
                    others.insert(name.clone());
                }
            }
        }
        Ok(Self {
            slots,
            others,
            keeping: if stored {
                Keeping::Store(OnceLock::new())
            } else {
                Keeping::Memory
            },
            policy,
        })
    }

    /// Hands over the opened token store; requests are served from it from now on.
    pub(crate) fn open_store(&self, store: Arc<Store>) {
        if let Keeping::Store(cell) = &self.keeping {
            let _ = cell.set(store);
        }
    }

    /// The token store, when there is one and it is open.
    pub(crate) fn store(&self) -> Option<&Arc<Store>> {
        match &self.keeping {
            Keeping::Memory => None,
            Keeping::Store(cell) => cell.get(),
        }
    }

    /// The open token store; `None` when tokens are kept in memory.
    fn stored(&self) -> Result<Option<&Arc<Store>>, Error> {
        match &self.keeping {
            Keeping::Memory => Ok(None),
            Keeping::Store(cell) => cell.get().map(Some).ok_or(Error::StoreNotReady),
        }
    }

    /// The grant of `connection`.
    pub(crate) fn grant(&self, connection: &str) -> Result<&Grant, Error> {
        self.slot(connection).map(|slot| &slot.grant)
    }

    /// Every grant, by connection name.
    pub(crate) fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.slots.values().map(|slot| &slot.grant)
    }

    /// The renewal policy.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Number of OAuth 2.0 connections served.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, connection: &str) -> Result<&Slot, Error> {
        self.slots.get(connection).ok_or_else(|| {
            if self.others.contains(connection) {
                Error::NotOAuth2(connection.to_owned())
            } else {
                Error::UnknownConnection(connection.to_owned())
            }
        })
    }

    /// A token for `connection`: the cached one while fresh, else a new one.
    pub(crate) async fn get(&self, connection: &str) -> Result<Token, Arc<Error>> {
        let slot = self.slot(connection)?;
        if let Some(store) = self.stored()? {
            return self.get_stored(slot, store).await;
        }
        let seen = slot.fetches.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        let waited_for_fetch = slot.fetches.load(Ordering::Acquire) != seen;
        if let Some(cached) = &state.token
            && (cached.is_fresh(Instant::now()) || waited_for_fetch)
        {
            // A token fetched while we waited is handed out even when it arrived stale
            // (`expires_in` shorter than the skew): it is as new as tokens get.
            return Ok(cached.token.clone());
        }
        if waited_for_fetch && let Some(failure) = &state.failure {
            return Err(Arc::clone(failure));
        }
        let outcome = slot.grant.request().await;
        slot.fetches.fetch_add(1, Ordering::Release);
        match outcome {
            Ok(issued) => {
                let cached = Cached::new(issued, Instant::now(), SystemTime::now());
                let token = cached.token.clone();
                *state = State {
                    token: Some(cached),
                    failure: None,
                };
                Ok(token)
            }
            Err(error) => {
                let error = Arc::new(error);
                *state = State {
                    token: None,
                    failure: Some(Arc::clone(&error)),
                };
                Err(error)
            }
        }
    }

    /// [`Self::get`] with the token store: callers that waited for another caller's failed
    /// attempt share its failure, as in memory, so a refusing server sees one request per wave.
    async fn get_stored(&self, slot: &Slot, store: &Store) -> Result<Token, Arc<Error>> {
        let seen = slot.fetches.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        if slot.fetches.load(Ordering::Acquire) != seen
            && let Some(failure) = &state.failure
        {
            return Err(Arc::clone(failure));
        }
        let outcome = flight::get(&slot.grant, store, &self.policy).await;
        slot.fetches.fetch_add(1, Ordering::Release);
        match outcome {
            Ok(record) => {
                state.failure = None;
                Ok(Token::from_record(&record))
            }
            Err(error) => {
                let error = Arc::new(error);
                state.failure = Some(Arc::clone(&error));
                Err(error)
            }
        }
    }

    /// Drops the cached token of `connection` when it is `access_token`; true when it was.
    pub(crate) async fn invalidate(
        &self,
        connection: &str,
        access_token: &str,
    ) -> Result<bool, Error> {
        let slot = self.slot(connection)?;
        let stored = self.stored()?;
        let mut state = slot.state.lock().await;
        if let Some(store) = stored {
            return flight::invalidate(store, connection, access_token).await;
        }
        let holds_it = state
            .token
            .as_ref()
            .is_some_and(|c| c.token.access_token.expose_secret() == access_token);
        if holds_it {
            state.token = None;
        }
        Ok(holds_it)
    }
}

impl Token {
    /// The access token of a usable record: its renewal time while fresh, else its expiry.
    fn from_record(record: &Record) -> Self {
        let now = crate::store::now_ms();
        Self {
            access_token: SecretString::from(record.access_token.clone().unwrap_or_default()),
            token_type: record.token_type.clone(),
            expires_at_ms: if now < record.stale_at_ms {
                record.stale_at_ms
            } else {
                record.expires_at_ms
            },
        }
    }
}

impl Cached {
    fn new(issued: Issued, now: Instant, wall: SystemTime) -> Self {
        let usable_for = usable_for(issued.expires_in, None);
        let expires_at_ms = match issued.expires_in {
            Some(_) => wall
                .checked_add(usable_for)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            None => 0,
        };
        Self {
            token: Token {
                access_token: issued.access_token,
                token_type: issued.token_type,
                expires_at_ms,
            },
            stale_at: now.checked_add(usable_for).unwrap_or(now),
        }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now < self.stale_at
    }
}

/// How long after issue a token is handed out before it is renewed: its lifetime minus `skew`
/// when given, else minus 10 % of it, at most [`MAX_SKEW`]; [`DEFAULT_LIFETIME`] when the
/// server did not say.
pub(crate) fn usable_for(expires_in: Option<Duration>, skew: Option<Duration>) -> Duration {
    match (expires_in, skew) {
        (Some(lifetime), Some(skew)) => lifetime.saturating_sub(skew),
        (Some(lifetime), None) => lifetime.saturating_sub(MAX_SKEW.min(lifetime / 10)),
        (None, _) => DEFAULT_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(expires_in: Option<Duration>) -> Issued {
        Issued {
            access_token: SecretString::from("t".to_owned()),
            token_type: "Bearer".to_owned(),
            expires_in,
            refresh_token: None,
        }
    }

    #[test]
    fn skew_is_a_tenth_of_the_lifetime_at_most_thirty_seconds() {
        let s = Duration::from_secs;
        assert_eq!(usable_for(Some(s(3600)), None), s(3570));
        assert_eq!(usable_for(Some(s(100)), None), s(90));
        assert_eq!(usable_for(Some(Duration::ZERO), None), Duration::ZERO);
        assert_eq!(usable_for(None, None), DEFAULT_LIFETIME);
        assert_eq!(usable_for(Some(s(3600)), Some(s(300))), s(3300));
        assert_eq!(usable_for(Some(s(60)), Some(s(300))), Duration::ZERO);
    }

    #[test]
    fn token_turns_stale_before_it_expires() {
        let now = Instant::now();
        let cached = Cached::new(
            issued(Some(Duration::from_secs(60))),
            now,
            SystemTime::now(),
        );
        assert!(cached.is_fresh(now));
        assert!(cached.is_fresh(now + Duration::from_secs(53)));
        assert!(!cached.is_fresh(now + Duration::from_secs(54)));
        assert!(!cached.is_fresh(now + Duration::from_secs(60)));
    }

    #[test]
    fn token_without_lifetime_is_kept_for_the_default_and_reports_unknown_expiry() {
        let now = Instant::now();
        let cached = Cached::new(issued(None), now, SystemTime::now());
        assert!(cached.is_fresh(now + DEFAULT_LIFETIME - Duration::from_millis(1)));
        assert!(!cached.is_fresh(now + DEFAULT_LIFETIME));
        assert_eq!(cached.token.expires_at_ms, 0);
    }

    #[test]
    fn reported_expiry_is_the_end_of_the_usable_window() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let cached = Cached::new(issued(Some(Duration::from_secs(100))), Instant::now(), wall);
        assert_eq!(cached.token.expires_at_ms, 1_090_000);
    }
}
