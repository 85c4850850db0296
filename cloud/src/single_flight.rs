//! Per-process single flight: one async mutex per key, so tasks of this process that
//! want the same work (refreshing one connection) take turns. Across processes the
//! refresh lease in the database does the same; this keeps a process from asking the
//! database for a lease it is already holding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A lock per key, created on first use.
#[derive(Debug, Default)]
pub struct KeyedLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    /// The lock for `key`; hold its guard for the duration of the work.
    pub fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget idle entries now and then so the map stays small.
        if map.len() > 10_000 {
            map.retain(|_, m| Arc::strong_count(m) > 1);
        }
        Arc::clone(map.entry(key.to_owned()).or_default())
    }
}
