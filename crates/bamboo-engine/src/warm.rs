//! Warm-pool bookkeeping, generic over the worker type so it is
//! testable without processes. The pool only decides; callers kill what it
//! hands back (`Checkout::dead`, `checkin`'s overflow) outside any lock.
// Behaviours: E10, E11, E13.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// What the pool needs to know about a worker.
pub trait Parkable {
    /// Non-blocking liveness check.
    // Behaviours: F3.
    fn is_alive(&mut self) -> bool;
}

/// Limits of the warm pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmLimits {
    /// Idle workers kept per fingerprint (reference: 4).
    pub max_idle_per_key: usize,
    /// Idle workers kept in total across fingerprints.
    pub max_idle_total: usize,
}

impl Default for WarmLimits {
    fn default() -> Self {
        Self {
            max_idle_per_key: 4,
            max_idle_total: 32,
        }
    }
}

/// Result of asking the pool for a worker.
#[derive(Debug)]
pub struct Checkout<W> {
    /// A live idle worker, when one was parked under the key.
    pub worker: Option<W>,
    /// Parked workers found dead on the way; the caller reaps them.
    pub dead: Vec<W>,
}

/// Idle workers by key with when each was parked, most recently parked last
/// (reused first: warmest).
#[derive(Debug)]
pub struct WarmPool<K, W> {
    idle: HashMap<K, Vec<(W, Instant)>>,
    limits: WarmLimits,
    total: usize,
}

impl<K: Eq + Hash + Clone, W: Parkable> WarmPool<K, W> {
    /// An empty pool.
    pub fn new(limits: WarmLimits) -> Self {
        Self {
            idle: HashMap::new(),
            limits,
            total: 0,
        }
    }

    /// Takes a live idle worker for `key`, reaping dead ones found first.
    pub fn checkout(&mut self, key: &K) -> Checkout<W> {
        let mut dead = Vec::new();
        let mut worker = None;
        if let Some(list) = self.idle.get_mut(key) {
            while let Some((mut w, _)) = list.pop() {
                self.total -= 1;
                if w.is_alive() {
                    worker = Some(w);
                    break;
                }
                dead.push(w);
            }
            if list.is_empty() {
                self.idle.remove(key);
            }
        }
        Checkout { worker, dead }
    }

    /// Parks a worker after a clean run. Returns it back when the pool is full
    /// for its key or in total (the caller retires it).
    pub fn checkin(&mut self, key: K, worker: W) -> Option<W> {
        self.checkin_at(key, worker, Instant::now())
    }

    fn checkin_at(&mut self, key: K, worker: W, now: Instant) -> Option<W> {
        let list = self.idle.entry(key).or_default();
        if list.len() >= self.limits.max_idle_per_key || self.total >= self.limits.max_idle_total {
            return Some(worker);
        }
        list.push((worker, now));
        self.total += 1;
        None
    }

    /// Takes out every worker parked before `cutoff` (idle too long); the
    /// caller retires them.
    pub fn evict_parked_before(&mut self, cutoff: Instant) -> Vec<W> {
        let mut out = Vec::new();
        self.idle.retain(|_, list| {
            // Oldest first: the stale ones are a prefix.
            let stale = list.partition_point(|(_, since)| *since < cutoff);
            out.extend(list.drain(..stale).map(|(w, _)| w));
            !list.is_empty()
        });
        self.total -= out.len();
        out
    }

    /// Idle workers parked under `key`.
    #[cfg(test)]
    pub fn idle_for(&self, key: &K) -> usize {
        self.idle.get(key).map_or(0, Vec::len)
    }

    /// Idle workers in total.
    pub fn idle_total(&self) -> usize {
        self.total
    }

    /// Empties the pool (shutdown); the caller retires everything returned.
    pub fn drain(&mut self) -> Vec<W> {
        self.total = 0;
        self.idle
            .drain()
            .flat_map(|(_, v)| v.into_iter().map(|(w, _)| w))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Fake {
        id: u32,
        alive: bool,
    }

    impl Parkable for Fake {
        fn is_alive(&mut self) -> bool {
            self.alive
        }
    }

    fn w(id: u32) -> Fake {
        Fake { id, alive: true }
    }

    #[test]
    fn empty_pool_misses_and_parked_worker_is_reused() {
        let mut p = WarmPool::new(WarmLimits::default());
        let c = p.checkout(&"a");
        assert!(c.worker.is_none() && c.dead.is_empty());
        assert!(p.checkin("a", w(1)).is_none());
        assert_eq!(p.idle_for(&"a"), 1);
        assert_eq!(p.checkout(&"b").worker, None, "other keys never share");
        assert_eq!(p.checkout(&"a").worker, Some(w(1)));
        assert_eq!(p.idle_total(), 0);
    }

    #[test]
    fn dead_workers_are_reaped_and_a_live_one_returned() {
        let mut p = WarmPool::new(WarmLimits::default());
        p.checkin("a", w(1));
        p.checkin(
            "a",
            Fake {
                id: 2,
                alive: false,
            },
        );
        p.checkin(
            "a",
            Fake {
                id: 3,
                alive: false,
            },
        );
        let c = p.checkout(&"a");
        assert_eq!(c.worker, Some(w(1)));
        assert_eq!(c.dead.iter().map(|f| f.id).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(p.idle_total(), 0);
    }

    #[test]
    fn extras_beyond_the_per_key_and_total_caps_are_handed_back() {
        let mut p = WarmPool::new(WarmLimits {
            max_idle_per_key: 2,
            max_idle_total: 3,
        });
        assert!(p.checkin("a", w(1)).is_none());
        assert!(p.checkin("a", w(2)).is_none());
        assert_eq!(p.checkin("a", w(3)), Some(w(3)), "per-key cap");
        assert!(p.checkin("b", w(4)).is_none());
        assert_eq!(p.checkin("c", w(5)), Some(w(5)), "total cap");
        assert_eq!(p.idle_total(), 3);
        let mut all: Vec<_> = p.drain().into_iter().map(|f| f.id).collect();
        all.sort();
        assert_eq!(all, vec![1, 2, 4]);
        assert_eq!(p.idle_total(), 0);
    }

    #[test]
    fn workers_parked_too_long_are_evicted_and_recent_ones_kept() {
        let mut p = WarmPool::new(WarmLimits::default());
        let t0 = Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        p.checkin_at("a", w(1), at(0));
        p.checkin_at("a", w(2), at(100));
        p.checkin_at("b", w(3), at(10));
        let mut gone: Vec<_> = p
            .evict_parked_before(at(50))
            .into_iter()
            .map(|f| f.id)
            .collect();
        gone.sort();
        assert_eq!(gone, vec![1, 3]);
        assert_eq!(p.idle_total(), 1);
        assert_eq!(p.idle_for(&"b"), 0);
        assert_eq!(p.checkout(&"a").worker, Some(w(2)));
    }
}
