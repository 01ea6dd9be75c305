//! Sessions the store has written, or read while holding the session's
//! lock, kept in memory so that most reads skip the database and the parsing
//! (an engine reads a child's session a few times per run).
//!
//! Sound because the store holds the data directory's lock (no other process
//! writes the database) and only holders of a session's lock fill its entry
//! (a lock-free read could otherwise cache a version older than a concurrent
//! write's), so the cache cannot go stale. Bounded by
//! count ([`CAPACITY`]) and by size ([`BUDGET`] bytes of JSON): past either,
//! the least recently used sessions are dropped and re-read on demand. A
//! session larger than [`LARGEST`] is never cached.
//!
//! Least recently used, not arbitrary: a run of many children keeps a few
//! hundred of them open and reads each a few times, while the finished ones
//! pile up behind. Dropping arbitrary entries dropped open children too, and
//! each of their reads then went to the database, more of them the longer
//! the run (about 4 per child at 10,000 children).

use std::sync::Mutex;

use bamboo_domain::Session;
use hashlink::LinkedHashMap;

/// A cached session and the length of its JSON (its measure in memory).
#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub(super) doc: Session,
    pub(super) doc_len: u64,
}

/// Sessions kept at most.
pub(super) const CAPACITY: usize = 1024;
/// Bytes of session JSON kept at most.
pub(super) const BUDGET: u64 = 32 * 1024 * 1024;
/// A session whose JSON is longer than this is not cached.
pub(super) const LARGEST: u64 = BUDGET / 8;

#[derive(Debug, Default)]
pub(super) struct SessionCache(Mutex<Entries>);

#[derive(Debug, Default)]
struct Entries {
    /// Least recently used first.
    map: LinkedHashMap<String, Cached>,
    /// Sum of the cached `doc_len`s.
    bytes: u64,
}

impl Entries {
    fn remove(&mut self, id: &str) {
        if let Some(old) = self.map.remove(id) {
            self.bytes -= old.doc_len;
        }
    }
}

impl SessionCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the cached session, if cached; it becomes the most
    /// recently used.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        self.entries().map.to_back(id).map(|c| c.doc.clone())
    }

    /// Whether `id` is cached (its recency unchanged).
    pub(super) fn contains(&self, id: &str) -> bool {
        self.entries().map.contains_key(id)
    }

    /// Remembers `id` as stored now, the most recently used.
    pub(super) fn put(&self, id: &str, stored: Cached) {
        let mut e = self.entries();
        e.remove(id);
        if stored.doc_len > LARGEST {
            return;
        }
        while e.map.len() >= CAPACITY || e.bytes + stored.doc_len > BUDGET {
            let Some((_, victim)) = e.map.pop_front() else {
                break;
            };
            e.bytes -= victim.doc_len;
        }
        e.bytes += stored.doc_len;
        e.map.insert(id.to_owned(), stored);
    }

    /// Forgets `id` (deleted).
    pub(super) fn forget(&self, id: &str) {
        self.entries().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(doc_len: u64) -> Cached {
        Cached {
            doc: Session::new_root("t"),
            doc_len,
        }
    }

    #[test]
    fn holds_at_most_its_capacity_and_keeps_what_was_just_put() {
        let cache = SessionCache::default();
        for i in 0..CAPACITY + 10 {
            cache.put(&format!("s{i}"), stored(100));
        }
        assert_eq!(cache.entries().map.len(), CAPACITY);
        assert_eq!(cache.entries().bytes, CAPACITY as u64 * 100);
        assert!(cache.get(&format!("s{}", CAPACITY + 9)).is_some());
        cache.forget(&format!("s{}", CAPACITY + 9));
        assert!(cache.get(&format!("s{}", CAPACITY + 9)).is_none());
    }

    #[test]
    fn holds_at_most_its_byte_budget_and_skips_huge_sessions() {
        let cache = SessionCache::default();
        for i in 0..20 {
            cache.put(&format!("s{i}"), stored(LARGEST));
        }
        let e = cache.entries();
        assert!(e.bytes <= BUDGET, "{} bytes cached", e.bytes);
        assert_eq!(e.map.len() as u64, BUDGET / LARGEST);
        drop(e);
        cache.put("huge", stored(LARGEST + 1));
        assert!(cache.get("huge").is_none());
        // Replacing an entry does not count it twice.
        cache.put("s19", stored(LARGEST));
        assert!(cache.entries().bytes <= BUDGET);
    }

    #[test]
    fn drops_the_least_recently_used_first() {
        let cache = SessionCache::default();
        for i in 0..CAPACITY {
            cache.put(&format!("s{i}"), stored(100));
        }
        // s0 is read, s1 written again: both outlive s2.., the oldest left.
        assert!(cache.get("s0").is_some());
        cache.put("s1", stored(100));
        for i in 0..CAPACITY - 2 {
            cache.put(&format!("new{i}"), stored(100));
        }
        assert!(cache.contains("s0"), "a session just read was dropped");
        assert!(cache.contains("s1"), "a session just written was dropped");
        for i in 2..CAPACITY {
            assert!(
                !cache.contains(&format!("s{i}")),
                "s{i} outlived newer sessions"
            );
        }
        assert_eq!(cache.entries().map.len(), CAPACITY);
    }
}
