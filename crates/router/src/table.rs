//! The route table in use: the loaded integration file, shared by every in-flight event and
//! replaced whole when the file is reloaded.

use std::sync::{Arc, PoisonError, RwLock};

use hookyard_core::Integration;

/// The current integration file. Readers take a snapshot ([`Table::current`]) and route with it
/// to the end, so an event in flight finishes with the table it started with.
pub(crate) struct Table {
    current: RwLock<Arc<Integration>>,
}

impl Table {
    pub(crate) fn new(integration: Arc<Integration>) -> Self {
        Self {
            current: RwLock::new(integration),
        }
    }

    /// A snapshot of the table; the lock is held only to clone the `Arc`.
    pub(crate) fn current(&self) -> Arc<Integration> {
        // A poisoned lock still holds a whole table: writers only assign one `Arc`.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `integration` the table for every event routed from now on.
    pub(crate) fn replace(&self, integration: Arc<Integration>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = integration;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_taken_before_a_replace_keeps_the_old_table() {
        let old = Arc::new(Integration::default());
        let table = Table::new(old.clone());
        let snapshot = table.current();
        let new = Arc::new(Integration::default());
        table.replace(new.clone());
        assert!(Arc::ptr_eq(&snapshot, &old));
        assert!(Arc::ptr_eq(&table.current(), &new));
    }
}
