//! Noticing that a worker has gone quiet, so it can give memory back.
//!
//! "Quiet" means no work in flight (a run, a lease renewal), whether or not
//! a parent is connected: the engine parks a pooled worker with its
//! connection still open, and the worker must notice that too, not only a
//! wait in `accept`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Work to do once a worker has had no work in flight for a while (for
/// example, giving memory back). It runs on the serving task, so it must be
/// quick; it runs once per quiet spell.
#[derive(Clone)]
pub struct IdleHook {
    /// How long the worker must be quiet before the hook runs.
    pub after: Duration,
    /// The work.
    pub run: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for IdleHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleHook")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// Counts the work in flight. Cheap to clone; every clone counts the same work.
#[derive(Debug, Clone)]
pub struct Activity(Arc<watch::Sender<usize>>);

impl Default for Activity {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Activity {
    /// Marks work as started; it counts until the guard drops, so work that
    /// panics or is aborted still ends.
    pub fn begin(&self) -> Busy {
        self.0.send_modify(|n| *n += 1);
        Busy(self.0.clone())
    }
}

/// One piece of work in flight; see [`Activity::begin`].
#[derive(Debug)]
pub struct Busy(Arc<watch::Sender<usize>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Runs `hook` each time `activity` has been quiet (no work in flight) for
/// `hook.after`, once per quiet spell, until `stop` is cancelled.
pub async fn run_when_quiet(activity: Activity, hook: IdleHook, stop: CancellationToken) {
    let mut changes = activity.0.subscribe();
    let watch = async {
        loop {
            // Every start or end of work restarts the wait.
            while *changes.borrow_and_update() > 0 {
                if changes.changed().await.is_err() {
                    return;
                }
            }
            match tokio::time::timeout(hook.after, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return,
                Err(_) => {
                    (hook.run)();
                    // Nothing more to give back until the next work.
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = watch => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting_hook(after_ms: u64) -> (IdleHook, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let hook = IdleHook {
            after: Duration::from_millis(after_ms),
            run: Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            }),
        };
        (hook, calls)
    }

    async fn sleep_ms(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_hook_runs_once_per_quiet_spell_and_never_during_a_run() {
        let activity = Activity::default();
        let (hook, calls) = counting_hook(100);
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(run_when_quiet(activity.clone(), hook, stop.clone()));

        // Quiet from the start: one call, however long it stays quiet.
        sleep_ms(150).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        sleep_ms(1_000).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A long run: no call while it is in flight.
        let run = activity.begin();
        sleep_ms(1_000).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // The wait starts when the run ends.
        drop(run);
        sleep_ms(50).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        sleep_ms(100).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Back-to-back short runs keep restarting the wait.
        for _ in 0..10 {
            drop(activity.begin());
            sleep_ms(60).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        sleep_ms(100).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        stop.cancel();
        assert!(watcher.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_runs_count_until_the_last_one_ends() {
        let activity = Activity::default();
        let (hook, calls) = counting_hook(100);
        let stop = CancellationToken::new();
        tokio::spawn(run_when_quiet(activity.clone(), hook, stop.clone()));
        let a = activity.begin();
        let b = activity.begin();
        drop(a);
        sleep_ms(500).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        drop(b);
        sleep_ms(150).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        stop.cancel();
    }
}
