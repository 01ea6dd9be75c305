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

/// Programs whose job is adopting orphans (init systems, `systemd --user`,
/// container inits): none of them starts a worker with a spec on its stdin,
/// so a worker whose unnamed parent is one of them was adopted.
const ADOPTER_NAMES: [&str; 7] = [
    "systemd",
    "init",
    "tini",
    "dumb-init",
    "docker-init",
    "catatonit",
    "s6-svscan",
];

/// What a worker started without a named parent knows of the process that
/// is its parent at its first instruction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Adopter {
    /// The pid of the Bamboo worker whose cli run this worker was started
    /// under (that worker is a child subreaper and says so in the
    /// environment of its programs).
    worker_subreaper: Option<u32>,
    /// Whether this worker leads its own process group: a program a worker
    /// starts directly does (it gets a group of its own), one started by
    /// that program's descendants normally does not.
    own_group: bool,
    /// The parent's program name (`/proc/<ppid>/comm`).
    parent_name: Option<String>,
}

impl Adopter {
    /// Looks at the parent `ppid` and this process.
    fn look(ppid: u32) -> Self {
        Self {
            worker_subreaper: std::env::var(bamboo_executors::proc::tree::SUBREAPER_PID_VAR)
                .ok()
                .and_then(|v| v.parse().ok()),
            own_group: nix::unistd::getpgrp() == nix::unistd::getpid(),
            parent_name: std::fs::read_to_string(format!("/proc/{ppid}/comm"))
                .ok()
                .map(|n| n.trim_end().to_owned()),
        }
    }

    /// Whether `ppid` adopted this worker rather than started it: init
    /// (unless this is init), a Bamboo worker that is not the one that
    /// started this process directly, or a program that adopts orphans for
    /// a living. Other subreapers cannot be told apart from a real parent.
    fn adopted_us(&self, ppid: u32) -> bool {
        let by_init = ppid == INIT && std::process::id() != INIT;
        let by_worker = self.worker_subreaper == Some(ppid) && !self.own_group;
        let by_name = self
            .parent_name
            .as_deref()
            .is_some_and(|n| ADOPTER_NAMES.contains(&n));
        by_init || by_worker || by_name
    }
}

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
        if named.is_some() {
            return Self::from(named, now, &Adopter::default());
        }
        Self::from(None, now, &Adopter::look(now))
    }

    /// The parent given the pid the fleet named (if any), `getppid` now and
    /// what is known of that process. With no name, a parent that adopts
    /// orphans (see [`Adopter::adopted_us`]) means the one that started the
    /// worker exited before this ran (a foreign parent that writes the spec
    /// and leaves): watching the adopter would keep the worker alive for its
    /// whole idle timeout, so the parent counts as gone.
    fn from(named: Option<u32>, now: u32, adopter: &Adopter) -> Self {
        match named {
            Some(pid) => Self {
                pid,
                gone_at_start: false,
            },
            None => Self {
                pid: now,
                gone_at_start: adopter.adopted_us(now),
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
        let nothing = Adopter::default();
        assert!(Parent::from(None, INIT, &nothing).gone_at_start);
        assert!(!Parent::from(None, 4242, &nothing).gone_at_start);
        // The fleet named the parent: init now is a re-parenting the watch
        // sees as a changed parent.
        assert!(!Parent::from(Some(4242), INIT, &nothing).gone_at_start);
    }

    #[test]
    fn a_worker_subreaper_adopted_us_unless_it_started_us_directly() {
        let under = |own_group| Adopter {
            worker_subreaper: Some(4242),
            own_group,
            parent_name: Some("bamboo-worker".into()),
        };
        // Started by a program of the worker's cli run, which then left.
        assert!(Parent::from(None, 4242, &under(false)).gone_at_start);
        // The run's program itself (it leads its own group).
        assert!(!Parent::from(None, 4242, &under(true)).gone_at_start);
        // A living foreign parent under that run.
        assert!(!Parent::from(None, 5151, &under(false)).gone_at_start);
    }

    #[test]
    fn programs_that_adopt_orphans_for_a_living_are_never_the_real_parent() {
        let named = |n: &str| Adopter {
            parent_name: Some(n.into()),
            ..Adopter::default()
        };
        assert!(Parent::from(None, 4242, &named("systemd")).gone_at_start);
        assert!(Parent::from(None, 4242, &named("tini")).gone_at_start);
        assert!(!Parent::from(None, 4242, &named("python3")).gone_at_start);
        assert!(!Parent::from(Some(4242), 4242, &named("systemd")).gone_at_start);
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
        let parent = Parent::from(Some(std::process::id()), 0, &Adopter::default());
        let gone = parent.watch(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_millis(1), gone.cancelled())
            .await
            .expect("reported without waiting for a poll");
    }
}
