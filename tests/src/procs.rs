//! Shared helpers of the process-containment tests: finding a test's own
//! processes in `/proc` by a unique argument, and bounded waits on real
//! processes (polling, since a process's end is no event we can await).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// A `sleep` duration no other process uses, like `100.0421337123456789`,
/// so a test finds its own sleeps and touches no one else's.
pub fn unique_sleep() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("100.{:07}{nanos:09}", std::process::id() % 10_000_000)
}

/// Live (not zombie) processes whose command line holds the argument `arg`.
pub fn live_with_arg(arg: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .filter(|pid| !crate::process_gone(*pid))
        .collect()
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The parent of `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Waits up to `limit` for `child` to exit; kills it if it does not.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    within(limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// SIGKILLs the live processes holding `arg` (a failed test's leftovers).
pub fn kill_leftovers(arg: &str) {
    for pid in live_with_arg(arg) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// The worker running the program `pid`: its nearest ancestor running the
/// worker binary.
pub fn worker_above(pid: u32) -> Option<u32> {
    let bin = std::fs::canonicalize(crate::worker_bin()).ok()?;
    let mut cur = parent_of(pid)?;
    while cur > 1 {
        if std::fs::read_link(format!("/proc/{cur}/exe")).is_ok_and(|exe| exe == bin) {
            return Some(cur);
        }
        cur = parent_of(cur)?;
    }
    None
}
