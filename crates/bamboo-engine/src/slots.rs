//! Running-actor limit (E12): at most N actors run at once; further runs wait.
//! Idle pooled workers hold no slot. Counts current and peak for observability.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limiter.
#[derive(Debug)]
pub struct RunSlots {
    sem: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// One held slot; released on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RunSlots {
    /// A limiter with `limit` slots (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(limit.max(1))),
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// Waits for a slot; `None` once the limiter is closed (shutdown).
    pub async fn acquire(&self) -> Option<Slot> {
        let permit = self.sem.clone().acquire_owned().await.ok()?;
        let now = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        Some(Slot {
            _permit: permit,
            running: self.running.clone(),
        })
    }

    /// Refuses every waiting and future `acquire`.
    pub fn close(&self) {
        self.sem.close();
    }

    /// Slots held now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Most slots ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn never_more_than_the_limit_run_and_waiters_proceed_in_turn() {
        let slots = Arc::new(RunSlots::new(3));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let s = slots.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = s.acquire().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(slots.peak(), 3);
        assert_eq!(slots.running(), 0);
    }

    #[tokio::test]
    async fn close_refuses_waiters() {
        let slots = RunSlots::new(1);
        let held = slots.acquire().await.unwrap();
        slots.close();
        assert!(slots.acquire().await.is_none());
        drop(held);
    }
}
