//! Access tokens this server issued, with their expiry; bounded, expired ones dropped first.
//!
//! Only a SHA-256 digest of each token is kept, so no token can be read back out of the store.
//! Callers pass `now`, which lets tests move the clock without sleeping.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hasher},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// Most tokens remembered at once; past it the one closest to expiry is forgotten.
pub const CAPACITY: usize = 10_000;

type Fingerprint = [u8; 32];

/// Issues opaque bearer tokens and answers whether one is still valid.
pub struct IssuedTokens {
    seed: Fingerprint,
    counter: u64,
    /// Expiry per token digest; `None` when the ttl is too long for `Instant` to represent.
    issued: HashMap<Fingerprint, Option<Instant>>,
    capacity: usize,
}

impl IssuedTokens {
    /// An empty store remembering at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            seed: seed(),
            counter: 0,
            issued: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Issues a new token valid from `now` for `ttl`.
    pub fn issue(&mut self, ttl: Duration, now: Instant) -> String {
        self.issued
            .retain(|_, expiry| expiry.is_none_or(|expiry| expiry > now));
        while self.issued.len() >= self.capacity {
            let soonest = self
                .issued
                .iter()
                .min_by_key(|(_, expiry)| expiry.map_or((1, now), |expiry| (0, expiry)))
                .map(|(fingerprint, _)| *fingerprint);
            match soonest {
                Some(fingerprint) => self.issued.remove(&fingerprint),
                None => break,
            };
        }
        self.counter += 1;
        let mut hasher = Sha256::new();
        hasher.update(self.seed);
        hasher.update(self.counter.to_le_bytes());
        hasher.update(unix_nanos().to_le_bytes());
        let token = URL_SAFE_NO_PAD.encode(hasher.finalize());
        self.issued
            .insert(fingerprint(&token), now.checked_add(ttl));
        token
    }

    /// Whether `token` was issued here and has not expired at `now`.
    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.issued
            .get(&fingerprint(token))
            .is_some_and(|expiry| expiry.is_none_or(|expiry| expiry > now))
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.issued.len()
    }
}

fn fingerprint(token: &str) -> Fingerprint {
    Sha256::digest(token.as_bytes()).into()
}

/// Per-process secret that makes tokens unguessable without a `rand` dependency: std's
/// `RandomState` keys its hashers with 128 bits from the operating system's generator.
fn seed() -> Fingerprint {
    let mut hasher = Sha256::new();
    for round in 0u8..4 {
        let mut keyed = std::collections::hash_map::RandomState::new().build_hasher();
        keyed.write_u8(round);
        hasher.update(keyed.finish().to_le_bytes());
    }
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(unix_nanos().to_le_bytes());
    hasher.finalize().into()
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn issued_token_is_valid_until_its_expiry() {
        let mut tokens = IssuedTokens::new(CAPACITY);
        let now = Instant::now();
        let token = tokens.issue(TTL, now);
        assert!(tokens.is_valid(&token, now));
        assert!(tokens.is_valid(&token, now + TTL - Duration::from_millis(1)));
        assert!(!tokens.is_valid(&token, now + TTL));
    }

    #[test]
    fn unknown_tokens_are_invalid_and_tokens_are_distinct() {
        let mut tokens = IssuedTokens::new(CAPACITY);
        let now = Instant::now();
        let first = tokens.issue(TTL, now);
        let second = tokens.issue(TTL, now);
        assert_ne!(first, second);
        assert!(first.len() >= 43);
        assert!(!tokens.is_valid("forged", now));
        assert!(!tokens.is_valid(&format!("{first}x"), now));
    }

    #[test]
    fn store_is_bounded_and_drops_expired_then_soonest_to_expire() {
        let mut tokens = IssuedTokens::new(2);
        let now = Instant::now();
        let short = tokens.issue(Duration::from_secs(1), now);
        let long = tokens.issue(TTL, now);
        let newest = tokens.issue(TTL, now);
        assert_eq!(tokens.len(), 2);
        assert!(!tokens.is_valid(&short, now));
        assert!(tokens.is_valid(&long, now) && tokens.is_valid(&newest, now));

        let later = now + Duration::from_secs(120);
        tokens.issue(TTL, later);
        assert_eq!(tokens.len(), 1, "expired tokens are dropped on issue");
    }

    #[test]
    fn huge_ttl_never_expires() {
        let mut tokens = IssuedTokens::new(CAPACITY);
        let now = Instant::now();
        let token = tokens.issue(Duration::MAX, now);
        assert!(tokens.is_valid(&token, now + Duration::from_secs(1_000_000)));
    }
}
