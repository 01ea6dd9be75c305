//! Child processes in their own process group, so a run can stop everything it
//! started (the program and any grandchildren) and nothing outlives it; and,
//! for the cli executor, the descendants that left the group
//! ([`RunProcesses`]): a cgroup v2 leaf per run where the worker may create
//! one ([`cgroup`]), else the run's mark and the subreaper ([`tree`]).

pub mod cgroup;
pub mod tree;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

/// How long a group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(500);

/// The process group of a spawned child (spawned with `process_group(0)`, so
/// the group id is the child's pid). Dropping it SIGKILLs the group unless
/// [`ProcessGroup::finish`] already cleaned up, so a dropped run future (for
/// example one superseded by the transport) leaves no process behind.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// The group led by `child`; inert when the child has no pid (already reaped).
    pub fn of(child: &Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Self { pgid }
    }

    /// Sends `signal` to every process of the group; a group that is already
    /// gone is not an error.
    pub fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            if let Err(e) = killpg(pgid, signal) {
                if e != nix::errno::Errno::ESRCH {
                    tracing::warn!(pgid = pgid.as_raw(), ?signal, error = %e, "killpg failed");
                }
            }
        }
    }

    /// Stops the group: SIGTERM, up to [`KILL_GRACE`] for the leader to exit,
    /// then SIGKILL for whatever is left, and reaps the leader.
    pub async fn terminate(mut self, child: &mut Child) {
        self.signal(Signal::SIGTERM);
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        self.signal(Signal::SIGKILL);
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        self.pgid = None;
    }

    /// The leader exited on its own: SIGKILL any grandchildren it left behind
    /// (they would otherwise hold the output pipes open and outlive the run).
    pub fn finish(mut self) {
        self.signal(Signal::SIGKILL);
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// How long a run's killed processes are waited for, to reap the ones
/// re-parented to the worker.
const REAP_WITHIN: Duration = Duration::from_secs(2);

/// Everything one run's program started: its process group, plus the
/// descendants that left the group: all of its cgroup leaf when it has one,
/// else those that carry the run's [`tree::RunMark`]. Dropping it SIGKILLs
/// them all unless [`RunProcesses::finish`] or [`RunProcesses::terminate`]
/// already did.
#[derive(Debug)]
pub struct RunProcesses {
    group: ProcessGroup,
    mark: tree::RunMark,
    /// The run's cgroup (see [`spawn_contained`]); `None` = the sweep path.
    leaf: Option<cgroup::Leaf>,
    leader: Option<i32>,
    /// What the sweeps killed; `None` until one ran. Once one ran nothing
    /// of the run is left to fork, so later steps need not scan again.
    killed: Mutex<Option<HashSet<i32>>>,
    done: bool,
}

impl RunProcesses {
    /// The processes of `child`, spawned with `process_group(0)` and `mark`
    /// in its environment, in `leaf` when it has one.
    pub fn of(child: &Child, mark: tree::RunMark, leaf: Option<cgroup::Leaf>) -> Self {
        Self {
            group: ProcessGroup::of(child),
            mark,
            leaf,
            leader: child.id().and_then(|id| i32::try_from(id).ok()),
            killed: Mutex::new(None),
            done: false,
        }
    }

    /// SIGKILLs everything the run left running (the program has exited), so
    /// their copies of its output pipes close too. Callable more than once.
    pub fn kill_leftovers(&self) {
        self.group.signal(Signal::SIGKILL);
        let killed = match &self.leaf {
            Some(leaf) => leaf.kill(),
            None => tree::signal_run(&self.mark, Signal::SIGKILL),
        };
        self.lock_killed()
            .get_or_insert_with(HashSet::new)
            .extend(killed);
    }

    /// The program exited by itself: ends whatever it left behind (unless
    /// [`RunProcesses::kill_leftovers`] did), keeps the run's leaf for the
    /// worker's next run when it emptied cleanly, else removes it once
    /// empty (at most [`cgroup::EMPTY_WITHIN`]), and reaps, in the
    /// background, what is re-parented to the worker.
    pub async fn finish(mut self) {
        if self.lock_killed().is_none() {
            self.kill_leftovers();
        }
        // Already signalled: a later kill could hit a recycled group id.
        self.group.pgid = None;
        self.done = true;
        self.end().await;
    }

    fn lock_killed(&self) -> std::sync::MutexGuard<'_, Option<HashSet<i32>>> {
        self.killed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the run: SIGTERM to all, up to [`KILL_GRACE`] for the program
    /// to exit, then SIGKILL for whatever is left; reaps the program.
    pub async fn terminate(mut self, child: &mut Child) {
        self.group.signal(Signal::SIGTERM);
        match &self.leaf {
            Some(leaf) => leaf.signal(Signal::SIGTERM),
            None => drop(tree::signal_run(&self.mark, Signal::SIGTERM)),
        }
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        self.kill_leftovers();
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        self.group.pgid = None;
        self.done = true;
        self.end().await;
    }

    /// Keeps or removes the killed run's leaf before the run ends (a
    /// one-shot worker may be killed right after; a kept leaf is removed
    /// by the worker's last act), and reaps in the background.
    async fn end(&mut self) {
        let leaf = self.leaf.take();
        self.reap_later();
        if let Some(leaf) = leaf {
            leaf.release().await;
        }
    }

    /// Reaps what the kill re-parented to the worker, and removes the
    /// run's leaf once empty, in the background.
    fn reap_later(&mut self) {
        let killed = self.lock_killed().take().unwrap_or_default();
        let leader = self.leader;
        let leaf = self.leaf.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(tree::reap(killed, leader, REAP_WITHIN));
            if let Some(leaf) = leaf {
                rt.spawn(leaf.remove_when_empty());
            }
        }
    }
}

impl Drop for RunProcesses {
    fn drop(&mut self) {
        if !self.done {
            self.kill_leftovers();
            self.reap_later();
        }
    }
}

/// A coding agent's program (`kind`: `claude_code`, `codex`) started for one
/// run: its environment exactly `env` plus the run's mark, piped stdio, in
/// `workspace` (which must exist), in its own process group, dying with the
/// worker, contained like a cli program (see [`spawn_contained`]). `install`
/// says how to get the program when it cannot be started.
pub fn spawn_agent(
    kind: &str,
    binary: &str,
    args: &[String],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    workspace: Option<&std::path::Path>,
    mark: &tree::RunMark,
    install: &str,
) -> Result<(Child, RunProcesses), String> {
    use std::process::Stdio;
    if let Some(ws) = workspace {
        if !ws.is_dir() {
            return Err(format!(
                "{kind} workspace {} is not a directory: create it or fix the spec's workspace",
                ws.display()
            ));
        }
    }
    let make = || {
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().cloned())
            .env(tree::RUN_MARK_VAR, mark.value())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(ws) = workspace {
            cmd.current_dir(ws);
        }
        die_with_worker(&mut cmd);
        cmd
    };
    let (child, leaf) = spawn_contained(make)
        .map_err(|e| format!("could not start {kind} program {binary:?}: {e}: {install}"))?;
    let procs = RunProcesses::of(&child, mark.clone(), leaf);
    Ok((child, procs))
}

/// Spawns the command `make` builds (in its own process group, with its
/// run mark) in a cgroup leaf of its own (fresh, or emptied by an earlier
/// run of this worker) when the worker can have one. A program
/// that could not enter its leaf never ran: it is started again without one,
/// and the run falls back to the mark and subreaper path.
pub fn spawn_contained(
    mut make: impl FnMut() -> tokio::process::Command,
) -> std::io::Result<(Child, Option<cgroup::Leaf>)> {
    // Orphaned descendants must stay ours, to be reaped (and found, without
    // a leaf), in both modes.
    let adopting = tree::adopt_orphans();
    let mut make = move || {
        let mut cmd = make();
        if adopting {
            cmd.env(tree::SUBREAPER_PID_VAR, std::process::id().to_string());
        }
        cmd
    };
    if let Some(mut leaf) = cgroup::Leaf::take() {
        let mut cmd = make();
        leaf.enter_on_spawn(&mut cmd);
        match cmd.spawn() {
            Ok(child) => {
                leaf.spawned();
                return Ok((child, Some(leaf)));
            }
            Err(e) => tracing::debug!(
                leaf = %leaf.dir().display(),
                error = %e,
                "starting the program in its cgroup failed; trying once more without one"
            ),
        }
    }
    make().spawn().map(|child| (child, None))
}

/// Arranges for the program `cmd` starts to get SIGKILL when the thread
/// that spawns it dies (PR_SET_PDEATHSIG), so a worker killed outright does
/// not leave its program running. Only on a current-thread runtime, whose
/// thread lives as long as the runs it drives: on a multi-thread runtime the
/// spawning thread may exit while the worker lives on. The signal does not
/// reach the program's own children (it is cleared on fork).
pub fn die_with_worker(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if current_thread {
            arm_parent_death_kill(cmd, nix::unistd::getpid());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn arm_parent_death_kill(cmd: &mut tokio::process::Command, worker: Pid) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes two raw system calls
    // (prctl, getppid) and builds an io::Error from an errno, which does not
    // allocate. It touches no lock and no memory shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The worker may have died before the prctl took effect.
            if nix::unistd::getppid() != worker {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Reads a stream to its end, keeping only its last `cap` bytes (lossy UTF-8).
pub async fn read_tail(mut stream: impl AsyncRead + Unpin, cap: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                // Trim at twice the cap so trimming stays amortised O(1).
                if tail.len() > 2 * cap {
                    tail.drain(..tail.len() - cap);
                }
            }
        }
    }
    if tail.len() > cap {
        tail.drain(..tail.len() - cap);
    }
    String::from_utf8_lossy(&tail).into_owned()
}
