//! The tokens of the integration file as it is now: replaced when the file changes, so a
//! connection added to it (or one whose OAuth 2.0 settings changed) is served without a
//! restart.
//!
//! A reload builds a fresh [`Tokens`] from the new file. Tokens kept in the token store survive
//! it (they live in NATS KV); tokens kept in memory are fetched again on their next use. A
//! request already running keeps the set it started with.

use std::sync::{Arc, OnceLock, RwLock};

use hookyard_core::Integration;

use crate::{Error, cache::Tokens, flight::Policy, store::Store};

/// The current [`Tokens`] and what a replacement needs.
pub(crate) struct Live {
    current: RwLock<Arc<Tokens>>,
    /// The token store once open, handed to every replacement.
    store: OnceLock<Arc<Store>>,
    stored: bool,
    policy: Policy,
}

impl Live {
    /// Serves `tokens`; `stored` and `policy` are what it was built with.
    pub(crate) fn new(tokens: Tokens, stored: bool, policy: Policy) -> Self {
        Self {
            current: RwLock::new(Arc::new(tokens)),
            store: OnceLock::new(),
            stored,
            policy,
        }
    }

    /// The tokens to serve a request from.
    pub(crate) fn current(&self) -> Arc<Tokens> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Hands over the opened token store, to the current tokens and every later replacement.
    pub(crate) fn open_store(&self, store: Arc<Store>) {
        let _ = self.store.set(store.clone());
        // Read after the store is set: a replacement made meanwhile either saw the store or is
        // the set read here.
        self.current().open_store(store);
    }

    /// Replaces the tokens with those of `integration`, or says why it cannot (the current
    /// ones then stay).
    pub(crate) fn replace(&self, integration: &Integration) -> Result<(), Error> {
        let tokens = Tokens::new(integration, self.stored, self.policy.clone())?;
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = self.store.get() {
            tokens.open_store(store.clone());
        }
        *current = Arc::new(tokens);
        Ok(())
    }
}
