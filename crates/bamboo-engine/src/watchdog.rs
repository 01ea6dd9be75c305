//! Run watchdog: a total-time cap and an idle cap (no child frame for that
//! long). The pump stamps activity on an atomic clock (no lock, no timer reset
//! per event); the watchdog sleeps to the nearest deadline and re-checks lazily.
//! A child waiting on its parent (an approval, a nested spawn) is not idle: the
//! idle cap counts only from the end of the last such wait.
// Behaviours: E9.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{Instant, Sleep};

/// When the run last showed activity, readable from other tasks.
// Behaviours: C3.
#[derive(Debug)]
pub struct ActivityClock {
    start: Instant,
    start_wall: DateTime<Utc>,
    last_nanos: AtomicU64,
    /// Requests of the child that the parent has not answered yet.
    waiting: AtomicUsize,
}

/// Marks the child as waiting on its parent until dropped; see [`ActivityClock::wait`].
#[derive(Debug)]
pub struct Waiting(Arc<ActivityClock>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.touch();
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ActivityClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            start_wall: Utc::now(),
            last_nanos: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The child waits on its parent until the guard drops; meanwhile the
    /// idle cap does not run, and the drop counts as activity.
    pub fn wait(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(self.clone())
    }

    /// Records activity now.
    pub fn touch(&self) {
        let n = self.start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.last_nanos.store(n, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }

    /// Wall-clock time of the last activity.
    pub fn last_wall(&self) -> DateTime<Utc> {
        let d = Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed));
        self.start_wall + chrono::Duration::from_std(d).unwrap_or_default()
    }
}

impl Default for ActivityClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Which cap tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// The run took longer than its total-time cap.
    RunLimit(Duration),
    /// No activity for the idle cap.
    Idle(Duration),
}

impl Trip {
    /// The reason recorded on the child.
    pub fn reason(self) -> String {
        match self {
            Self::RunLimit(d) => format!(
                "watchdog: run exceeded its time limit of {}s; raise the child's run timeout if the task needs longer (`run --run-timeout`, the tool's run_timeout_secs)",
                d.as_secs_f64()
            ),
            Self::Idle(d) => format!(
                "watchdog: no event from the child for {}s; raise the child's idle timeout if it works silently (`run --idle-timeout`, the tool's idle_timeout_secs)",
                d.as_secs_f64()
            ),
        }
    }
}

/// Watches one run.
#[derive(Debug)]
pub struct Watchdog {
    clock: Arc<ActivityClock>,
    run_limit: Duration,
    idle_limit: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl Watchdog {
    /// Starts watching with the given caps; activity is read from `clock`.
    pub fn new(clock: Arc<ActivityClock>, run_limit: Duration, idle_limit: Duration) -> Self {
        clock.touch();
        let first = clock.start + run_limit.min(idle_limit);
        Self {
            clock,
            run_limit,
            idle_limit,
            sleep: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    /// Resolves when a cap trips. Cancel-safe: state lives in `self`.
    pub async fn tripped(&mut self) -> Trip {
        loop {
            self.sleep.as_mut().await;
            let now = Instant::now();
            let run_deadline = self.clock.start + self.run_limit;
            let idle_deadline = if self.clock.waiting.load(Ordering::Acquire) > 0 {
                now + self.idle_limit
            } else {
                self.clock.last() + self.idle_limit
            };
            if now >= run_deadline {
                return Trip::RunLimit(self.run_limit);
            }
            if now >= idle_deadline {
                return Trip::Idle(self.idle_limit);
            }
            self.sleep.as_mut().reset(run_deadline.min(idle_deadline));
        }
    }
}

#[cfg(test)]
mod tests {
    //! On tokio's paused clock: time moves only when every task waits, straight
    //! to the next timer, so each trip happens at an exact instant.

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_cap_trips_when_nothing_happens() {
        let clock = Arc::new(ActivityClock::new());
        let idle = Duration::from_millis(80);
        let mut wd = Watchdog::new(clock, Duration::from_secs(30), idle);
        let t0 = Instant::now();
        assert_eq!(wd.tripped().await, Trip::Idle(idle));
        assert_eq!(t0.elapsed(), idle, "trips exactly at the idle cap");
    }

    #[tokio::test(start_paused = true)]
    async fn activity_keeps_idle_cap_away_but_run_cap_still_trips() {
        let clock = Arc::new(ActivityClock::new());
        let run = Duration::from_millis(300);
        let mut wd = Watchdog::new(clock.clone(), run, Duration::from_millis(100));
        // Activity every 20 ms, well inside the 100 ms idle cap.
        let toucher = tokio::spawn(async move {
            loop {
                clock.touch();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let t0 = Instant::now();
        let trip = wd.tripped().await;
        toucher.abort();
        assert_eq!(trip, Trip::RunLimit(run));
        assert_eq!(t0.elapsed(), run, "trips exactly at the run cap");
        assert!(
            trip.reason().contains("run_timeout_secs") && trip.reason().contains("--run-timeout")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_waiting_on_its_parent_is_not_idle() {
        let clock = Arc::new(ActivityClock::new());
        let idle = Duration::from_millis(60);
        let mut wd = Watchdog::new(clock.clone(), Duration::from_secs(30), idle);
        let waiting = clock.wait();
        let t0 = Instant::now();
        // Four idle caps pass while the child waits.
        let early = tokio::time::timeout(Duration::from_millis(250), wd.tripped()).await;
        assert!(early.is_err(), "idle cap tripped during a wait: {early:?}");
        drop(waiting);
        let released = Instant::now();
        assert_eq!(wd.tripped().await, Trip::Idle(idle));
        // The idle cap counts from the end of the wait, not from the start.
        assert_eq!(released.elapsed(), idle);
        assert_eq!(t0.elapsed(), Duration::from_millis(250) + idle);
    }

    #[tokio::test(start_paused = true)]
    async fn last_wall_moves_with_activity() {
        let clock = ActivityClock::new();
        let before = clock.last_wall();
        tokio::time::sleep(Duration::from_millis(10)).await;
        clock.touch();
        assert_eq!(
            clock.last_wall() - before,
            chrono::Duration::milliseconds(10)
        );
    }
}
