//! A cgroup v2 leaf per cli run, where the worker may create cgroups below
//! its own ([`hierarchy`]): the program enters it between fork and exec, so
//! everything it ever starts is in it, however it escapes (a `setsid`
//! daemon, a cleared environment); at run end the leaf is killed whole
//! (`cgroup.kill`, else a freeze and a SIGKILL per member), then removed
//! once empty; or, in a worker, when it emptied cleanly (no process, no
//! cgroup below it, not frozen), kept for the worker's next run
//! ([`Leaf::take`], [`keep_emptied_leaves`]), which saves each run the
//! cgroup's creation and removal.
//!
//! No controller is enabled anywhere (the v2 "no internal processes" rule
//! stays satisfied): a leaf is only a membership. Leaves are named
//! `bamboo-run-<pid namespace>-<worker pid>-<worker start time>-<n>`, so
//! leaves left by a worker killed outright are recognised, killed and
//! removed when any worker in the same cgroup next creates one
//! ([`Leaf::create`]), or by the front door when its run is over
//! ([`sweep_stale_leaves`]).

pub mod hierarchy;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use hierarchy::CGROUP_VAR;

/// The name every run leaf starts with.
pub const LEAF_PREFIX: &str = "bamboo-run-";

/// How long a killed leaf is waited for to empty before it is removed.
pub const EMPTY_WITHIN: Duration = Duration::from_secs(2);

/// How many times the kill without `cgroup.kill` re-reads the members.
const KILL_PASSES: usize = 8;

/// How often a killed leaf is checked for emptiness.
const EMPTY_POLL: Duration = Duration::from_millis(10);

/// Emptied leaves a worker keeps for its next runs; more are removed.
const MAX_SPARE: usize = 4;

/// One run's cgroup. Dropping it kills what is in it and removes it (in the
/// background) unless [`Leaf::remove_when_empty`] already did.
#[derive(Debug)]
pub struct Leaf {
    dir: PathBuf,
    /// The leaf's `cgroup.procs`, open from creation until the program is
    /// spawned (the child writes to it between fork and exec).
    procs: Option<std::fs::File>,
    done: bool,
}

impl Leaf {
    /// A leaf for a run: one an earlier run of this worker left empty
    /// ([`Leaf::release`]) when there is one, else a fresh one
    /// ([`Leaf::create`]); `None` when cgroups are unavailable.
    pub fn take() -> Option<Self> {
        loop {
            let Some(dir) = spares().pop() else {
                return Self::create();
            };
            match open_procs(&dir) {
                Ok(procs) => {
                    return Some(Self {
                        dir,
                        procs: Some(procs),
                        done: false,
                    })
                }
                Err(e) => {
                    tracing::debug!(leaf = %dir.display(), error = %e, "cannot reuse a kept run cgroup; removing it");
                    remove_or_keep(&dir);
                }
            }
        }
    }

    /// A fresh leaf below the worker's own cgroup, after removing leaves of
    /// dead workers there; `None` when cgroups are unavailable (a debug line
    /// says why).
    pub fn create() -> Option<Self> {
        let own = hierarchy::own_cgroup()?;
        sweep_stale(own);
        let dir = own.join(leaf_name());
        if let Err(e) = std::fs::create_dir(&dir) {
            tracing::debug!(leaf = %dir.display(), error = %e, "cannot create a cgroup for the run; using the subreaper path");
            return None;
        }
        match open_procs(&dir) {
            Ok(procs) => {
                live().insert(dir.clone());
                Some(Self {
                    dir,
                    procs: Some(procs),
                    done: false,
                })
            }
            Err(e) => {
                tracing::debug!(leaf = %dir.display(), error = %e, "cannot open the run cgroup's cgroup.procs; using the subreaper path");
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// The leaf's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the program `cmd` starts enter the leaf before it execs (so
    /// before it can fork). If it cannot, the spawn fails; nothing ran.
    pub fn enter_on_spawn(&self, cmd: &mut tokio::process::Command) {
        if let Some(procs) = &self.procs {
            enter_before_exec(cmd, std::os::fd::AsRawFd::as_raw_fd(procs));
        }
    }

    /// The program was spawned: the leaf's `cgroup.procs` is closed.
    pub fn spawned(&mut self) {
        self.procs = None;
    }

    /// Sends `signal` to everything in the leaf.
    pub fn signal(&self, signal: Signal) {
        for pid in members(&self.dir) {
            signal_pid(pid, signal);
        }
    }

    /// SIGKILLs everything in the leaf, forks racing the kill included.
    /// Returns the pids it held (for reaping).
    pub fn kill(&self) -> HashSet<i32> {
        kill_cgroup(&self.dir)
    }

    /// Waits (up to [`EMPTY_WITHIN`]) for the killed leaf to empty, then
    /// removes it; one still busy then is left to the stale sweep.
    pub async fn remove_when_empty(mut self) {
        self.done = true;
        remove_when_empty(self.dir.clone()).await;
    }

    /// The run is over and the leaf killed: in a process that keeps
    /// emptied leaves ([`keep_emptied_leaves`]), a leaf left exactly as a
    /// fresh one (no process, no cgroup below it, no controller enabled for
    /// one, not frozen) is kept for its next run ([`Leaf::take`]); any
    /// other is removed once empty, as [`Leaf::remove_when_empty`] does.
    pub async fn release(mut self) {
        self.done = true;
        if KEEP_EMPTIED.load(Ordering::Relaxed) && reusable(&self.dir) {
            let mut spares = spares();
            if spares.len() < MAX_SPARE {
                spares.push(self.dir.clone());
                return;
            }
        }
        remove_when_empty(self.dir.clone()).await;
    }
}

/// Whether emptied leaves are kept for the next runs ([`keep_emptied_leaves`]).
static KEEP_EMPTIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, leaves that empty cleanly are kept for this process's next
/// runs instead of being removed ([`Leaf::release`]). Only for a process
/// whose last act is [`kill_all_leaves`] (the worker's), which removes the
/// kept ones: elsewhere they would outlive it until the next stale sweep.
pub fn keep_emptied_leaves() {
    KEEP_EMPTIED.store(true, Ordering::Relaxed);
}

/// Opens `dir`'s `cgroup.procs` for the spawned program to write itself in.
fn open_procs(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
}

/// The emptied leaves kept for the next runs (all in [`live`], so the
/// worker's last act removes them too).
fn spares() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static SPARES: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    SPARES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Whether the leaf `dir` is as a fresh one would be, for the next program
/// to enter: nothing in it or below it, not frozen, no cgroup below it
/// (`cgroup.stat`), no controller enabled for children (which would refuse
/// the next program its entry).
fn reusable(dir: &Path) -> bool {
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let Some(events) = read("cgroup.events") else {
        return false;
    };
    let has = |line: &str| events.lines().any(|l| l.trim() == line);
    // No `frozen` line: a kernel without the freezer, so not frozen.
    if !has("populated 0") || has("frozen 1") {
        return false;
    }
    let no_descendants = read("cgroup.stat")
        .is_some_and(|stat| stat.lines().any(|l| l.trim() == "nr_descendants 0"));
    no_descendants && read("cgroup.subtree_control").is_some_and(|c| c.trim().is_empty())
}

impl Drop for Leaf {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        kill_cgroup(&self.dir);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(remove_when_empty(self.dir.clone()));
        } else {
            remove_or_keep(&self.dir);
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn enter_before_exec(cmd: &mut tokio::process::Command, procs: std::os::fd::RawFd) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: one write(2) of a static byte to
    // a descriptor the parent opened before the fork and keeps open until
    // the spawn returned, and an io::Error from errno, which does not
    // allocate. Writing "0" to cgroup.procs moves the writing process.
    unsafe {
        cmd.pre_exec(move || {
            let wrote = nix::libc::write(procs, b"0".as_ptr().cast(), 1);
            if wrote == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn enter_before_exec(cmd: &mut tokio::process::Command, procs: std::os::fd::RawFd) {
    let _ = (cmd, procs);
}

/// Kills every leaf this worker still has, waits for them to empty (up to
/// [`EMPTY_WITHIN`] in all) and removes them: the worker's last act, so
/// nothing its runs started outlives it. Returns how many processes the
/// leaves held.
pub fn kill_all_leaves() -> usize {
    spares().clear();
    let leaves: Vec<PathBuf> = live().iter().cloned().collect();
    let killed: usize = leaves.iter().map(|l| kill_cgroup(l).len()).sum();
    let deadline = Instant::now() + EMPTY_WITHIN;
    for leaf in &leaves {
        while populated(leaf) && Instant::now() < deadline {
            std::thread::sleep(EMPTY_POLL);
        }
        remove_or_keep(leaf);
    }
    killed
}

/// The leaves created and not removed yet.
fn live() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    static LIVE: OnceLock<Mutex<BTreeSet<PathBuf>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A worker's identity in leaf names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    /// Its pid namespace (inode), in which alone its pid means anything.
    pid_ns: u64,
    pid: u32,
    /// Clock ticks since boot (`/proc/<pid>/stat` field 22), so a recycled
    /// pid is told apart.
    start: u64,
}

/// This worker's identity.
fn owner() -> Owner {
    static OWNER: OnceLock<Owner> = OnceLock::new();
    *OWNER.get_or_init(|| {
        let pid = std::process::id();
        Owner {
            pid_ns: pid_namespace().unwrap_or(0),
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    })
}

/// The inode of this process's pid namespace (`pid:[4026531836]`).
fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.to_str()?;
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The start time of the live (not zombie) process `pid`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    // Field 22 overall; `fields` is past field 3 (state).
    fields.nth(18)?.parse().ok()
}

/// A name for a new leaf of this worker.
fn leaf_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let Owner { pid_ns, pid, start } = owner();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{LEAF_PREFIX}{pid_ns}-{pid}-{start}-{n}")
}

/// The worker a leaf name names.
fn leaf_owner(name: &str) -> Option<Owner> {
    let mut parts = name.strip_prefix(LEAF_PREFIX)?.split('-');
    let pid_ns = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts
        .next()
        .is_none()
        .then_some(Owner { pid_ns, pid, start })
}

/// Whether a leaf's worker is known to be gone: it is not this one, it was
/// in this pid namespace (elsewhere its pid tells nothing), and no live
/// process has its pid and start time.
fn owner_gone(o: Owner) -> bool {
    let me = owner();
    if o == me || o.pid_ns != me.pid_ns {
        return false;
    }
    match start_time(o.pid) {
        None => true,
        // An unknown start time (0) cannot be compared: the pid decides.
        Some(now) => o.start != 0 && now != o.start,
    }
}

/// Kills and removes the leaves of dead workers in this process's cgroup,
/// waiting up to [`EMPTY_WITHIN`] for each to empty. For a process that
/// outlives the workers it started (the front door, after its engine shut
/// down), so a worker killed outright leaves nothing running.
pub async fn sweep_stale_leaves() {
    if let Some(own) = hierarchy::own_cgroup() {
        for dir in kill_stale(own) {
            remove_when_empty(dir).await;
        }
    }
}

/// Kills and removes the leaves in `own` whose worker is gone (killed
/// outright, so it could not); a leaf still busy is removed in the
/// background, or by the next sweep.
fn sweep_stale(own: &Path) {
    for dir in kill_stale(own) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if populated(&dir) => drop(rt.spawn(remove_when_empty(dir))),
            _ => remove_or_keep(&dir),
        }
    }
}

/// Kills the leaves in `own` whose worker is gone; returns them.
fn kill_stale(own: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(own) else {
        return Vec::new();
    };
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(dead) = name
            .to_str()
            .and_then(leaf_owner)
            .filter(|o| owner_gone(*o))
        else {
            continue;
        };
        let dir = entry.path();
        let killed = kill_cgroup(&dir);
        tracing::info!(leaf = %dir.display(), worker = dead.pid, killed = killed.len(), "removing the cgroup of a run whose worker is gone");
        stale.push(dir);
    }
    stale
}

/// The pids in `dir` and in any cgroup below it.
fn members(dir: &Path) -> HashSet<i32> {
    let mut pids: HashSet<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for sub in subdirs(dir) {
        pids.extend(members(&sub));
    }
    pids
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn signal_pid(pid: i32, signal: Signal) {
    if let Err(e) = kill(Pid::from_raw(pid), signal) {
        if e != nix::errno::Errno::ESRCH {
            tracing::warn!(pid, ?signal, error = %e, "could not signal a process of a run's cgroup");
        }
    }
}

/// SIGKILLs everything in the cgroup `dir` (and below): `cgroup.kill`
/// (Linux 5.14 and later) does it atomically; without it, a freeze and a
/// SIGKILL per member. Returns the pids it held.
fn kill_cgroup(dir: &Path) -> HashSet<i32> {
    // Empty (the common end of a run): nothing in it can fork, nothing
    // can enter it, so there is nothing to kill.
    if !populated(dir) {
        return HashSet::new();
    }
    let held = members(dir);
    match std::fs::write(dir.join("cgroup.kill"), "1") {
        Ok(()) => held,
        Err(_) if !dir.exists() => held,
        Err(e) => {
            tracing::debug!(leaf = %dir.display(), error = %e, "no cgroup.kill; killing the cgroup's processes one by one");
            kill_one_by_one(dir, held)
        }
    }
}

/// The kill without `cgroup.kill`: frozen, the members cannot fork while
/// they are signalled (a frozen process still dies of SIGKILL); they are
/// re-read until no new one shows up.
fn kill_one_by_one(dir: &Path, mut killed: HashSet<i32>) -> HashSet<i32> {
    let frozen = std::fs::write(dir.join("cgroup.freeze"), "1").is_ok();
    for pid in &killed {
        signal_pid(*pid, Signal::SIGKILL);
    }
    for _ in 0..KILL_PASSES {
        let fresh: Vec<i32> = members(dir)
            .into_iter()
            .filter(|p| !killed.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            signal_pid(pid, Signal::SIGKILL);
            killed.insert(pid);
        }
    }
    if frozen {
        // Nothing that survived the kill stays frozen.
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    }
    killed
}

/// Whether processes remain in `dir` or below (`cgroup.events`); a leaf
/// that is gone is empty.
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|events| events.lines().any(|l| l.trim() == "populated 1"))
}

async fn remove_when_empty(dir: PathBuf) {
    let deadline = tokio::time::Instant::now() + EMPTY_WITHIN;
    while populated(&dir) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(EMPTY_POLL).await;
    }
    remove_or_keep(&dir);
}

/// Removes the leaf `dir` (cgroups a program created below it first); one
/// that is still busy is kept for the stale sweep, with a debug line.
fn remove_or_keep(dir: &Path) {
    match remove_tree(dir) {
        Ok(()) => {
            live().remove(dir);
        }
        Err(e) => {
            tracing::debug!(leaf = %dir.display(), error = %e, "cannot remove a run's cgroup yet; a later sweep will");
        }
    }
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
