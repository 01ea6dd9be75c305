//! Finding what a run started after it left the run's process group (a
//! `setsid` daemon, say), through `/proc` (Linux; elsewhere these find nothing).
//!
//! Two things make that possible. Each run's program gets a unique
//! [`RunMark`] in its environment, which its descendants inherit. And the
//! worker is a child subreaper ([`adopt_orphans`]): a descendant whose parent
//! exits is re-parented to the worker rather than to init, so it stays a
//! descendant of the worker and can be found by walking parent links.
//!
//! Limit: a descendant that both leaves the process group and clears its
//! environment is not recognised as the run's once its marked parent is gone;
//! it is ended when the worker exits ([`kill_all_descendants`]).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The environment variable that carries a run's mark.
pub const RUN_MARK_VAR: &str = "BAMBOO_RUN_MARK";

/// How many times a sweep re-reads `/proc` for processes forked while it was
/// signalling their parents.
const SWEEP_PASSES: usize = 8;

/// A unique mark for one run's processes (the value of [`RUN_MARK_VAR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMark(String);

impl RunMark {
    /// A fresh, unguessable mark.
    pub fn fresh() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The value to put in [`RUN_MARK_VAR`].
    pub fn value(&self) -> &str {
        &self.0
    }

    /// Whether a `/proc/<pid>/environ` image holds this mark.
    fn in_environ(&self, environ: &[u8]) -> bool {
        let entry = format!("{RUN_MARK_VAR}={}", self.0);
        environ.split(|b| *b == 0).any(|e| e == entry.as_bytes())
    }
}

/// Makes this process a child subreaper, once; `false` where that is not
/// possible (then orphans go to init and escape [`run_members`]).
pub fn adopt_orphans() -> bool {
    static ADOPTING: OnceLock<bool> = OnceLock::new();
    *ADOPTING.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            match nix::sys::prctl::set_child_subreaper(true) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot become a child subreaper; programs that leave their process group may outlive their run");
                    false
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        false
    })
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    ppid: i32,
    pgrp: i32,
    session: i32,
    zombie: bool,
}

fn read_proc(pid: i32) -> Option<Proc> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<Proc> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(Proc {
        ppid,
        pgrp,
        session,
        zombie: state == "Z",
    })
}

/// Who a process's children are, as `/proc` tells it now.
enum Children {
    /// From every process's parent, in one pass over `/proc`.
    Scanned(HashMap<i32, Vec<i32>>),
    /// From `/proc/<pid>/task/<tid>/children` (`CONFIG_PROC_CHILDREN`),
    /// which costs in proportion to the subtree rather than the machine.
    Listed,
}

impl Children {
    fn now() -> Self {
        static LISTED: OnceLock<bool> = OnceLock::new();
        let listed = *LISTED.get_or_init(|| {
            let me = own_pid();
            std::path::Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
        });
        if listed {
            Self::Listed
        } else {
            Self::Scanned(children_by_parent())
        }
    }

    fn of(&self, pid: i32) -> Vec<i32> {
        match self {
            Self::Scanned(map) => map.get(&pid).cloned().unwrap_or_default(),
            Self::Listed => listed_children(pid),
        }
    }
}

fn children_by_parent() -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(p) = read_proc(pid) {
            children.entry(p.ppid).or_default().push(pid);
        }
    }
    children
}

/// A process's children are listed per thread (the one that forked them).
fn listed_children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

fn own_pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(i32::MAX)
}

/// This process's descendants for which `claim` holds, with everything
/// below them (`claim` is not asked again inside a claimed subtree).
fn claimed_descendants(claim: impl Fn(i32) -> bool) -> HashSet<i32> {
    let children = Children::now();
    let mut seen = HashSet::new();
    let mut claimed = HashSet::new();
    let mut todo: Vec<(i32, bool)> = children
        .of(own_pid())
        .into_iter()
        .map(|c| (c, false))
        .collect();
    while let Some((pid, inside)) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let inside = inside || claim(pid);
        if inside {
            claimed.insert(pid);
        }
        todo.extend(children.of(pid).into_iter().map(|c| (c, inside)));
    }
    claimed
}

/// This process's descendants that carry `mark`, and everything below them
/// (marked or not: a child that cleared its environment is still found
/// while its marked parent lives).
pub fn run_members(mark: &RunMark) -> HashSet<i32> {
    claimed_descendants(|pid| {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| mark.in_environ(&env))
    })
}

/// Every descendant of this process.
fn all_descendants() -> HashSet<i32> {
    claimed_descendants(|_| true)
}

/// Signals what `find` returns, again and again until a pass finds nobody new
/// (a process may fork while its parent is being signalled). Returns every
/// pid signalled.
fn sweep(signal: Signal, passes: usize, find: impl Fn() -> HashSet<i32>) -> HashSet<i32> {
    let mut signalled = HashSet::new();
    for _ in 0..passes {
        let fresh: Vec<i32> = find()
            .into_iter()
            .filter(|pid| !signalled.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            if let Err(e) = kill(Pid::from_raw(pid), signal) {
                if e != nix::errno::Errno::ESRCH {
                    tracing::warn!(pid, ?signal, error = %e, "could not signal a run's process");
                }
            }
            signalled.insert(pid);
        }
    }
    signalled
}

/// Sends `signal` to the run's processes outside its group; with SIGKILL,
/// repeats until none is left to find. Returns the pids signalled.
pub fn signal_run(mark: &RunMark, signal: Signal) -> HashSet<i32> {
    let passes = if signal == Signal::SIGKILL {
        SWEEP_PASSES
    } else {
        1
    };
    sweep(signal, passes, || run_members(mark))
}

/// SIGKILLs every descendant of this process, and everything in its runs'
/// cgroup leaves (the worker's last act, so nothing it started outlives it).
/// Returns how many were signalled.
pub fn kill_all_descendants() -> usize {
    let in_leaves = super::cgroup::kill_all_leaves();
    in_leaves + sweep(Signal::SIGKILL, SWEEP_PASSES, all_descendants).len()
}

/// This process's zombie children that nobody else waits for: those in the
/// run's process group `group` other than its leader (tokio's child), and
/// session leaders (adopted `setsid` escapees; the programs we spawn never
/// lead a session). They exited on their own after being adopted.
fn adopted_zombies(group: i32) -> Vec<i32> {
    let me = own_pid();
    Children::now()
        .of(me)
        .into_iter()
        .filter(|&pid| pid != group)
        .filter(|&pid| {
            read_proc(pid)
                .is_some_and(|p| p.zombie && p.ppid == me && (p.pgrp == group || p.session == pid))
        })
        .collect()
}

/// Reaps, within `within`, those of `pids` that end up as this process's
/// zombies (children of killed processes are re-parented here), and the
/// run's adopted zombies (see `adopted_zombies`). `leader` is the run's
/// program, which tokio waits for, and leads the run's process group.
pub async fn reap(mut pids: HashSet<i32>, leader: Option<i32>, within: Duration) {
    if let Some(l) = leader {
        pids.extend(adopted_zombies(l));
        pids.remove(&l);
    }
    let deadline = tokio::time::Instant::now() + within;
    let me = own_pid();
    while !pids.is_empty() {
        pids.retain(|&pid| match read_proc(pid) {
            None => false,
            Some(p) if p.zombie && p.ppid == me => {
                let _ = nix::sys::wait::waitpid(
                    Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
                false
            }
            Some(_) => true,
        });
        if pids.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !pids.is_empty() {
        tracing::debug!(
            left = pids.len(),
            "some of a run's killed processes were not reaped in time"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_matches_only_its_own_whole_entry() {
        let mark = RunMark("abc".into());
        assert!(mark.in_environ(b"PATH=/bin\0BAMBOO_RUN_MARK=abc\0HOME=/"));
        assert!(mark.in_environ(b"BAMBOO_RUN_MARK=abc"));
        assert!(!mark.in_environ(b"BAMBOO_RUN_MARK=abcd\0"));
        assert!(!mark.in_environ(b"XBAMBOO_RUN_MARK=abc\0"));
        assert!(!mark.in_environ(b"BAMBOO_RUN_MARK=ab\0"));
        assert_ne!(RunMark::fresh(), RunMark::fresh());
    }

    #[test]
    fn the_stat_line_is_read_past_a_tricky_command_name() {
        let p = parse_stat("42 (a) Z (b) S 7 40 41 0").expect("parses");
        assert_eq!((p.ppid, p.pgrp, p.session), (7, 40, 41));
        assert!(!p.zombie);
        let p = parse_stat("43 (sleep) Z 1 43 43 0").expect("parses");
        assert!(p.zombie);
        assert!(parse_stat("garbage").is_none());
        let me = read_proc(own_pid()).expect("own stat");
        assert!(!me.zombie);
        assert_eq!(me.ppid as u32, std::os::unix::process::parent_id());
    }

    #[test]
    fn a_marked_program_and_its_unmarked_child_are_members_and_are_killed() {
        let mark = RunMark::fresh();
        // The inner sleep drops the mark; it is still found below its parent.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "env -u BAMBOO_RUN_MARK sleep 30 & echo $!; wait"])
            .env(RUN_MARK_VAR, mark.value())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read pid");
        let sleep: i32 = line.trim().parse().expect("pid");
        let sh = child.id() as i32;
        let members = run_members(&mark);
        assert!(
            members.contains(&sh) && members.contains(&sleep),
            "{members:?}"
        );
        assert!(run_members(&RunMark::fresh()).is_empty());
        assert!(all_descendants().contains(&sleep));
        let killed = signal_run(&mark, Signal::SIGKILL);
        assert!(
            killed.contains(&sh) && killed.contains(&sleep),
            "{killed:?}"
        );
        assert!(!child.wait().expect("wait").success());
    }
}
