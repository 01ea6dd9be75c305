//! Which session is whose parent, as read before: a session's parent never
//! changes, so a run's ancestry (the logs its events go to) costs no read of
//! its parent and theirs, which for a root with thousands of children is a
//! large record read once per run. Bounded: past [`CAPACITY`] entries it
//! starts over (the next reads fill it again).

use std::collections::HashMap;
use std::sync::Mutex;

/// Most sessions remembered.
const CAPACITY: usize = 4096;

/// Session id → its parent's id (`None`: a root).
#[derive(Debug, Default)]
pub(crate) struct Parents(Mutex<HashMap<String, Option<String>>>);

impl Parents {
    /// The parent of `id`, when known: `Some(None)` for a root.
    pub fn get(&self, id: &str) -> Option<Option<String>> {
        self.lock().get(id).cloned()
    }

    /// Remembers that `id`'s parent is `parent`.
    pub fn put(&self, id: &str, parent: Option<String>) {
        let mut map = self.lock();
        if map.len() >= CAPACITY && !map.contains_key(id) {
            map.clear();
        }
        map.insert(id.to_owned(), parent);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_remembered_roots_too_and_the_map_stays_bounded() {
        let p = Parents::default();
        assert_eq!(p.get("c"), None, "unknown until read");
        p.put("c", Some("root".into()));
        p.put("root", None);
        assert_eq!(p.get("c"), Some(Some("root".into())));
        assert_eq!(p.get("root"), Some(None));
        for i in 0..CAPACITY + 10 {
            p.put(&format!("s{i}"), None);
        }
        assert!(p.lock().len() <= CAPACITY);
    }
}
