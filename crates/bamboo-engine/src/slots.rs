//! Running-actor limit: at most N actors run at once; further runs wait.
//! Idle pooled workers hold no slot. Counts current and peak for observability.
//!
//! A run that only waits for its nested grandchildren lends its slot to
//! them ([`LendableSlot`]): otherwise, with every slot held by a waiting
//! parent, the grandchildren would wait forever (a limit of 1 deadlocked).
// Behaviours: E12, E18.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

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
        Some(self.held(permit))
    }

    /// A place in the queue for a slot, taken now: places are served in the
    /// order they were taken, whatever order the tasks that wait on them
    /// start in (runs queued one after another start in that order, as
    /// `--max-running 1` users expect).
    pub fn queue(&self) -> Place {
        // Polled once here, which puts it in the semaphore's queue (served
        // first come, first served); the task's polls then wait on it.
        let mut permit: PermitFuture =
            Box::pin(tokio::task::unconstrained(self.sem.clone().acquire_owned()));
        let waker = futures::task::noop_waker();
        if let Poll::Ready(got) = permit.as_mut().poll(&mut Context::from_waker(&waker)) {
            permit = Box::pin(std::future::ready(got));
        }
        Place {
            permit,
            running: self.running.clone(),
            peak: self.peak.clone(),
        }
    }

    /// A slot if one is free now (and no run is queued for one).
    pub fn try_acquire(&self) -> Option<Slot> {
        let permit = self.sem.clone().try_acquire_owned().ok()?;
        Some(self.held(permit))
    }

    fn held(&self, permit: OwnedSemaphorePermit) -> Slot {
        held(permit, &self.running, &self.peak)
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

fn held(permit: OwnedSemaphorePermit, running: &Arc<AtomicUsize>, peak: &AtomicUsize) -> Slot {
    let now = running.fetch_add(1, Ordering::AcqRel) + 1;
    peak.fetch_max(now, Ordering::AcqRel);
    Slot {
        _permit: permit,
        running: running.clone(),
    }
}

type PermitFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A place in the queue for a slot (see [`RunSlots::queue`]); dropped, it
/// leaves the queue.
pub struct Place {
    permit: PermitFuture,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place").finish_non_exhaustive()
    }
}

impl Place {
    /// Waits for this place's slot; `None` once the limiter is closed.
    pub async fn wait(self) -> Option<Slot> {
        let permit = self.permit.await.ok()?;
        Some(held(permit, &self.running, &self.peak))
    }
}

/// A run's slot, which the run lends out while it waits on nested spawns.
#[derive(Debug)]
pub struct LendableSlot(std::sync::Mutex<Lending>);

#[derive(Debug)]
struct Lending {
    slot: Option<Slot>,
    /// Nested spawns the run is waiting on.
    lent: usize,
    /// The run is over: never take a slot again.
    closed: bool,
}

impl LendableSlot {
    /// Wraps the slot a run acquired.
    pub fn new(slot: Slot) -> Self {
        Self(std::sync::Mutex::new(Lending {
            slot: Some(slot),
            lent: 0,
            closed: false,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Lending> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the slot up while a nested spawn runs (the first of several
    /// concurrent ones releases it).
    pub fn lend(&self) {
        let mut s = self.state();
        s.lent += 1;
        s.slot = None;
    }

    /// Ends one [`LendableSlot::lend`]; after the last one, waits for a slot
    /// again so the run resumes within the limit.
    pub async fn restore(&self, slots: &RunSlots) {
        {
            let mut s = self.state();
            s.lent = s.lent.saturating_sub(1);
            if s.lent > 0 || s.closed {
                return;
            }
        }
        let slot = slots.acquire().await;
        let mut s = self.state();
        // Lent again, or finished, while we waited: the slot is not ours.
        if s.lent == 0 && !s.closed {
            s.slot = slot;
        }
    }

    /// The run is over: releases the slot for good.
    pub fn close(&self) {
        let mut s = self.state();
        s.closed = true;
        s.slot = None;
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
    async fn a_waiting_run_lends_its_slot_and_resumes_within_the_limit() {
        let slots = RunSlots::new(1);
        let parent = LendableSlot::new(slots.acquire().await.unwrap());
        parent.lend();
        parent.lend();
        assert_eq!(slots.running(), 0, "the first lend releases the slot");
        let grandchild = slots.acquire().await.unwrap();
        parent.restore(&slots).await;
        assert_eq!(slots.running(), 1, "one lend still out: no slot taken");
        drop(grandchild);
        parent.restore(&slots).await;
        assert_eq!(slots.running(), 1, "the parent holds its slot again");
        parent.close();
        assert_eq!(slots.running(), 0);
        assert_eq!(slots.peak(), 1);
    }

    #[tokio::test]
    async fn try_acquire_takes_only_a_free_slot_and_never_jumps_the_queue() {
        let slots = Arc::new(RunSlots::new(1));
        let held = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        let s = slots.clone();
        let waiter = tokio::spawn(async move { s.acquire().await.map(drop) });
        tokio::task::yield_now().await;
        drop(held);
        assert!(
            slots.try_acquire().is_none(),
            "the queued waiter goes first"
        );
        waiter.await.unwrap().unwrap();
        assert!(slots.try_acquire().is_some());
    }

    #[tokio::test]
    async fn close_refuses_waiters() {
        let slots = RunSlots::new(1);
        let held = slots.acquire().await.unwrap();
        slots.close();
        assert!(slots.acquire().await.is_none());
        drop(held);
    }

    #[tokio::test]
    async fn places_are_served_in_the_order_taken_not_the_order_waited_on() {
        let slots = RunSlots::new(1);
        let held = slots.acquire().await.unwrap();
        let places: Vec<Place> = (0..3).map(|_| slots.queue()).collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The last place starts waiting first.
        for (i, place) in places.into_iter().enumerate().rev() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let slot = place.wait().await.unwrap();
                tx.send(i).unwrap();
                drop(slot);
            });
            tokio::task::yield_now().await;
        }
        drop(held);
        let mut served = Vec::new();
        for _ in 0..3 {
            served.push(rx.recv().await.unwrap());
        }
        assert_eq!(served, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_place_given_up_leaves_the_queue() {
        let slots = RunSlots::new(1);
        let held = slots.acquire().await.unwrap();
        let (first, second) = (slots.queue(), slots.queue());
        drop(first);
        drop(held);
        let slot = tokio::time::timeout(std::time::Duration::from_secs(10), second.wait())
            .await
            .expect("the second place was served")
            .unwrap();
        assert_eq!(slots.running(), 1);
        drop(slot);
        assert!(
            slots.queue().wait().await.is_some(),
            "a free slot is served at once"
        );
    }
}
