//! Watching the parent from the worker's first instruction (F12), so a parent
//! that dies while the spec is read or the listener bound is noticed too.
//!
//! Two watchers feed one token: `PR_SET_PDEATHSIG` (Linux) makes the kernel
//! signal the worker the moment its parent goes, and polling `getppid` covers
//! other systems, a failed `prctl`, and a parent that died before the `prctl`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The parent-death signal. A dedicated one, because the kernel also sends it
/// when only the parent's spawning *thread* exits: on receipt the worker
/// checks that its parent really changed, and ignores it otherwise.
#[cfg(target_os = "linux")]
const PARENT_DEATH_SIGNAL: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGUSR2;

/// The worker's parent as seen at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pid: u32,
    /// Re-parented to init before the first instruction: the parent that
    /// started the worker is gone already.
    gone_at_start: bool,
}

/// The pid orphans are re-parented to when no subreaper takes them.
const INIT: u32 = 1;

impl Parent {
    /// The parent now; call this first thing, before anything that takes
    /// time, since a parent that dies earlier goes unnoticed.
    pub fn at_start() -> Self {
        // The fleet names the parent; a worker it started whose parent died
        // before this line ran has been re-parented already, and getppid
        // alone would take the new parent for the real one.
        let named = std::env::var(bamboo_subagent::fleet::PARENT_PID_VAR)
            .ok()
            .and_then(|v| v.parse::<u32>().ok());
        let now = std::os::unix::process::parent_id();
        Self::from(named, now)
    }

    /// The parent given the pid the fleet named (if any) and `getppid` now.
    /// With no name, a parent that is init already means the one that
    /// started the worker exited before this ran (a foreign parent that
    /// writes the spec and leaves): watching init would keep the worker
    /// alive for its whole idle timeout, so the parent counts as gone.
    fn from(named: Option<u32>, now: u32) -> Self {
        match named {
            Some(pid) => Self {
                pid,
                gone_at_start: false,
            },
            None => Self {
                pid: now,
                gone_at_start: now == INIT && std::process::id() != INIT,
            },
        }
    }

    /// The parent's pid.
    pub fn pid(self) -> u32 {
        self.pid
    }

    /// Whether the worker has been re-parented, i.e. the parent died.
    pub fn is_gone(self) -> bool {
        self.gone_at_start || std::os::unix::process::parent_id() != self.pid
    }

    /// Starts watching (on the current tokio runtime). The returned token is
    /// cancelled once the parent is gone, at once if it already is.
    pub fn watch(self, poll: Duration) -> CancellationToken {
        let gone = CancellationToken::new();
        arm_death_signal(self, &gone);
        tokio::spawn(poll_until_gone(self, poll, gone.clone()));
        tracing::debug!(parent = self.pid, "watching the parent process");
        gone
    }
}

async fn poll_until_gone(parent: Parent, poll: Duration, gone: CancellationToken) {
    loop {
        if parent.is_gone() {
            notice(parent, &gone);
            return;
        }
        tokio::select! {
            _ = gone.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

fn notice(parent: Parent, gone: &CancellationToken) {
    if !gone.is_cancelled() {
        tracing::info!(
            parent = parent.pid,
            "the parent process is gone; exiting (F12)"
        );
        gone.cancel();
    }
}

/// Installs the handler, then asks for the signal (in that order: its default
/// action would end the worker without cleaning up). A failure leaves the
/// polling to do the job.
fn arm_death_signal(parent: Parent, gone: &CancellationToken) {
    #[cfg(target_os = "linux")]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut deaths = match signal(SignalKind::from_raw(PARENT_DEATH_SIGNAL as i32)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle the parent-death signal; polling for the parent instead");
                return;
            }
        };
        let token = gone.clone();
        tokio::spawn(async move {
            while deaths.recv().await.is_some() {
                if parent.is_gone() {
                    notice(parent, &token);
                    return;
                }
                tracing::debug!("parent-death signal while the parent lives (its spawning thread exited); ignored");
            }
        });
        if let Err(e) = nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL) {
            tracing::warn!(error = %e, "cannot ask for a parent-death signal; polling for the parent instead");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (parent, gone);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_as_the_parent_of_an_unnamed_start_means_the_parent_left() {
        assert!(Parent::from(None, INIT).gone_at_start);
        assert!(!Parent::from(None, 4242).gone_at_start);
        // The fleet named the parent: init now is a re-parenting the watch
        // sees as a changed parent.
        assert!(!Parent::from(Some(4242), INIT).gone_at_start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_living_parent_is_not_reported_gone() {
        let parent = Parent::at_start();
        assert!(!parent.is_gone());
        let gone = parent.watch(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!gone.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_parent_that_changed_before_watching_is_reported_at_once() {
        // Our own pid is never our parent: as if the real one died already.
        let parent = Parent::from(Some(std::process::id()), 0);
        let gone = parent.watch(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_millis(1), gone.cancelled())
            .await
            .expect("reported without waiting for a poll");
    }
}
