//! Sessions the file store has read or written, kept in memory so that most
//! reads skip the file and its parsing (an engine reads a child's session a
//! few times per run).
//!
//! Sound because the store holds the data directory's lock: while it lives,
//! no one else writes these files, so the cache cannot go stale. Bounded: past
//! [`CAPACITY`] sessions an arbitrary one is dropped and re-read on demand.

use std::collections::HashMap;
use std::sync::Mutex;

use bamboo_domain::Session;

use super::log::Newest;

/// Sessions kept at most.
pub(super) const CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct SessionCache(Mutex<HashMap<String, Newest<Session>>>);

impl SessionCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Newest<Session>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the cached session and its log length, if cached.
    pub(super) fn get(&self, id: &str) -> Option<Newest<Session>> {
        self.map().get(id).cloned()
    }

    /// Remembers `id` as stored now.
    pub(super) fn put(&self, id: &str, stored: Newest<Session>) {
        let mut map = self.map();
        if map.len() >= CAPACITY && !map.contains_key(id) {
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(id.to_owned(), stored);
    }

    /// Forgets `id` (deleted).
    pub(super) fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(title: &str) -> Newest<Session> {
        Newest {
            doc: Session::new_root(title),
            intact_len: 1,
        }
    }

    #[test]
    fn holds_at_most_its_capacity_and_keeps_what_was_just_put() {
        let cache = SessionCache::default();
        for i in 0..CAPACITY + 10 {
            cache.put(&format!("s{i}"), stored("t"));
        }
        assert_eq!(cache.map().len(), CAPACITY);
        assert!(cache.get(&format!("s{}", CAPACITY + 9)).is_some());
        cache.forget(&format!("s{}", CAPACITY + 9));
        assert!(cache.get(&format!("s{}", CAPACITY + 9)).is_none());
    }
}
