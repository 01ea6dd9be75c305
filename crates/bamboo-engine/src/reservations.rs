//! Runner reservations: at most one run per child. A reservation exists
//! from enqueue to the completion event; it carries the run's cancellation and
//! lets `cancel` wait for the run to finish.
// Behaviours: E5.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};

use bamboo_domain::{AgentEvent, LastTool, TaskList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::watchdog::ActivityClock;

/// Shared state of one queued or live run.
#[derive(Debug)]
pub(crate) struct RunControl {
    pub cancel: CancellationToken,
    reason: Mutex<Option<String>>,
    done: watch::Sender<bool>,
    /// Set once the run has a worker; gives `get_child` its live last-event time.
    // Behaviours: C3.
    pub clock: OnceLock<Arc<ActivityClock>>,
    /// Pid of the leased worker (0: none yet).
    pub pid: AtomicU32,
    /// What the run's events said last about tools and the task list.
    // Behaviours: C10, S4.
    seen: Mutex<Seen>,
}

/// What the pump noted from a run's events.
#[derive(Debug, Default)]
struct Seen {
    last_tool: Option<LastTool>,
    task_list: Option<TaskList>,
}

impl RunControl {
    /// Cancels with a reason (the first reason wins).
    pub fn cancel(&self, reason: &str) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert_with(|| reason.to_owned());
        self.cancel.cancel();
    }

    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes a tool or task-list event of the run; other events cost one match.
    pub fn note(&self, event: &AgentEvent) {
        let tool = LastTool::of(event);
        let tasks = match event {
            AgentEvent::TaskListUpdated { task_list } => Some(task_list.clone()),
            _ => None,
        };
        if tool.is_none() && tasks.is_none() {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if tool.is_some() {
            seen.last_tool = tool;
        }
        if tasks.is_some() {
            seen.task_list = tasks;
        }
    }

    /// The last tool event of the run so far.
    // Behaviours: C10.
    pub fn last_tool(&self) -> Option<LastTool> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_tool
            .clone()
    }

    /// The task list as the run last reported it.
    // Behaviours: S4.
    pub fn task_list(&self) -> Option<TaskList> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .task_list
            .clone()
    }

    /// Waits until the run has published its completion.
    pub async fn finished(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// Live reservations by child id.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    runs: Arc<Mutex<HashMap<String, Arc<RunControl>>>>,
}

/// Holds a reservation; dropping it ends the run's registration and wakes
/// everyone waiting in [`RunControl::finished`].
#[derive(Debug)]
pub(crate) struct Reservation {
    pub child: String,
    pub control: Arc<RunControl>,
    runs: Arc<Mutex<HashMap<String, Arc<RunControl>>>>,
}

impl Reservation {
    /// Ends the reservation and runs `publish` (the completion event) under the
    /// registry lock, so a new run of the child can be reserved only after the
    /// completion is out, and never before a subscriber could react to it.
    pub fn complete(self, publish: impl FnOnce()) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        self.remove_own(&mut runs);
        publish();
        drop(runs);
        // Drop wakes the waiters.
    }

    fn remove_own(&self, runs: &mut HashMap<String, Arc<RunControl>>) {
        // Only our own entry: a newer reservation of the child stays.
        if runs
            .get(&self.child)
            .is_some_and(|c| Arc::ptr_eq(c, &self.control))
        {
            runs.remove(&self.child);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let runs = self.runs.clone();
        self.remove_own(&mut runs.lock().unwrap_or_else(|p| p.into_inner()));
        self.control.done.send_replace(true);
    }
}

impl Reservations {
    /// Reserves `child`; `None` when it already has a run. The run's token is a
    /// child of `parent_token` so engine shutdown cancels it.
    pub fn reserve(&self, child: &str, parent_token: &CancellationToken) -> Option<Reservation> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if runs.contains_key(child) {
            return None;
        }
        let control = Arc::new(RunControl {
            cancel: parent_token.child_token(),
            reason: Mutex::new(None),
            done: watch::channel(false).0,
            clock: OnceLock::new(),
            pid: AtomicU32::new(0),
            seen: Mutex::new(Seen::default()),
        });
        runs.insert(child.to_owned(), control.clone());
        Some(Reservation {
            child: child.to_owned(),
            control,
            runs: self.runs.clone(),
        })
    }

    pub fn get(&self, child: &str) -> Option<Arc<RunControl>> {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(child)
            .cloned()
    }

    /// Cancels every queued and live run with `reason`.
    pub fn cancel_all(&self, reason: &str) {
        let all: Vec<_> = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for c in all {
            c.cancel(reason);
        }
    }

    pub fn count(&self) -> usize {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_reservation_per_child_and_waiters_wake_on_release() {
        let reg = Reservations::default();
        let root = CancellationToken::new();
        let r = reg.reserve("c", &root).unwrap();
        assert!(reg.reserve("c", &root).is_none(), "second run refused");
        let control = reg.get("c").unwrap();
        let waiter = tokio::spawn(async move { control.finished().await });
        drop(r);
        waiter.await.unwrap();
        assert!(reg.reserve("c", &root).is_some());
    }

    #[test]
    fn engine_token_cancels_runs_and_first_reason_wins() {
        let reg = Reservations::default();
        let root = CancellationToken::new();
        let r = reg.reserve("c", &root).unwrap();
        r.control.cancel("first");
        r.control.cancel("second");
        assert_eq!(r.control.reason().as_deref(), Some("first"));
        let r2 = reg.reserve("d", &root).unwrap();
        root.cancel();
        assert!(r2.control.cancel.is_cancelled());
    }
}
